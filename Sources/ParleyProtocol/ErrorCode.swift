/// Stable machine-readable error codes; the raw values are part of the wire protocol.
public enum ErrorCode: String, Sendable, CaseIterable, Hashable {
    case badFrame = "bad_frame"
    case frameTooLarge = "frame_too_large"
    case unknownType = "unknown_type"
    case unsupportedVersion = "unsupported_version"
    case notLoggedIn = "not_logged_in"
    case alreadyLoggedIn = "already_logged_in"
    case invalidUsername = "invalid_username"
    case invalidPasswordFormat = "invalid_password_format"
    case wrongPassword = "wrong_password"
    case accountLockedNow = "account_locked_now"
    case accountLocked = "account_locked"
    case alreadyOnline = "already_online"
    case accountDisabled = "account_disabled"
    case registrationClosed = "registration_closed"
    case unknownUser = "unknown_user"
    case recipientBlockedYou = "recipient_blocked_you"
    case cannotBlockSelf = "cannot_block_self"
    case alreadyBlocked = "already_blocked"
    case notBlocked = "not_blocked"
    case cannotMessageSelf = "cannot_message_self"
    case userOffline = "user_offline"
    case privateNotEnabled = "private_not_enabled"
    case privateAlreadyActive = "private_already_active"
    case privateNoRequest = "private_no_request"
    case rateLimited = "rate_limited"
    case tooManyRequests = "too_many_requests"
    case tooManyConnections = "too_many_connections"
    case tooManyNewConnections = "too_many_new_connections"
    case tooManyRegistrations = "too_many_registrations"
    case recipientQueueFull = "recipient_queue_full"
    case `internal` = "internal"

    /// The text shown to a person when the server sends no more specific message.
    public var defaultMessage: String {
        switch self {
        case .badFrame: "Error. Malformed request"
        case .frameTooLarge: "Error. Request too large"
        case .unknownType: "Error. Unknown request type"
        case .unsupportedVersion: "Error. Unsupported protocol version"
        case .notLoggedIn: "Error. Please log in first"
        case .alreadyLoggedIn: "Error. Already logged in"
        case .invalidUsername:
            "Error. Invalid username (1-32 letters, digits, '_', '-', '.'; starting with a letter or digit)"
        case .invalidPasswordFormat: "Error. Password must be 8 to 1024 bytes"
        case .wrongPassword: "Invalid Password. Please try again"
        case .accountLockedNow: "Invalid Password. Your account has been blocked. Please try again later"
        case .accountLocked: "Your account is blocked due to multiple login failures. Please try again later"
        case .alreadyOnline: "Error. This user is already logged in"
        case .accountDisabled: "Error. This account has been disabled by the server operator"
        case .registrationClosed: "Error. Registration of new users is closed"
        case .unknownUser: "Error. Invalid user"
        case .recipientBlockedYou: "Your message could not be delivered as the recipient has blocked you"
        case .cannotBlockSelf: "Error. Cannot block self"
        case .alreadyBlocked: "Error. User is already blocked"
        case .notBlocked: "Error. User is not blocked"
        case .cannotMessageSelf: "Error. Cannot message self"
        case .userOffline: "Error. User is offline"
        case .privateNotEnabled: "Error. Private messaging is not enabled with this user"
        case .privateAlreadyActive: "Error. A private session with this user is already active"
        case .privateNoRequest: "Error. No pending private request from this user"
        case .rateLimited: "Error. Too many requests, slow down"
        case .tooManyRequests: "Error. Too many private requests waiting for an answer"
        case .tooManyConnections: "Error. Too many connections from your address; close one and try again"
        case .tooManyNewConnections: "Error. Too many new connections from your address; try again in a minute"
        case .tooManyRegistrations: "Error. Too many accounts registered from your address; try again later"
        case .recipientQueueFull: "Error. The recipient has too many unread messages; try again after they log in"
        case .internal: "Error. Internal server error"
        }
    }
}

/// A request or server message that could not be decoded, with the code to reply with.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The error code the server should reply with.
    public var code: ErrorCode
    /// Human detail, e.g. "missing field 'text'".
    public var message: String
    /// The request id, when the frame was readable far enough to find one.
    public var id: Int64?

    public init(_ code: ErrorCode, _ message: String? = nil, id: Int64? = nil) {
        self.code = code
        self.message = message ?? code.defaultMessage
        self.id = id
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
