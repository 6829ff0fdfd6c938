import Foundation

/// A registered user as stored; `name` is the canonical (lowercased by the server) key.
public struct Account: Sendable, Hashable {
    /// Canonical name, unique.
    public var name: String
    /// Name as the user typed it at registration, for display.
    public var displayName: String
    /// PHC string produced by the server's password hasher; the store never interprets it.
    public var passwordHash: String
    /// Consecutive failed logins since the last success, reset, or lock; a check under way counts
    /// as failed until it is settled (see `ChatStore.claimLoginAttempt`).
    public var failedAttempts: Int
    /// Logins are refused until this instant, if set and in the future.
    public var lockedUntil: Date?
    /// When the account was created.
    public var createdAt: Date
    /// Set by an operator: logins are refused (`account_disabled`) until it is enabled again.
    public var disabled: Bool

    public init(name: String, displayName: String, passwordHash: String, failedAttempts: Int = 0,
                lockedUntil: Date? = nil, createdAt: Date, disabled: Bool = false) {
        self.name = name
        self.displayName = displayName
        self.passwordHash = passwordHash
        self.failedAttempts = failedAttempts
        self.lockedUntil = lockedUntil
        self.createdAt = createdAt
        self.disabled = disabled
    }

    /// Whether the account is locked at `now`.
    public func isLocked(at now: Date) -> Bool {
        guard let lockedUntil else { return false }
        return lockedUntil > now
    }
}

/// A message queued for a recipient who was offline, kept until the recipient acknowledges it.
public struct StoredMessage: Sendable, Hashable {
    /// Delivery id: increasing, never reused, and the key for `acknowledge`.
    public var id: Int64
    /// Canonical name of the recipient.
    public var recipient: String
    /// Canonical name of the sender.
    public var sender: String
    /// Message text.
    public var text: String
    /// When the sender sent it.
    public var sentAt: Date

    public init(id: Int64, recipient: String, sender: String, text: String, sentAt: Date) {
        self.id = id
        self.recipient = recipient
        self.sender = sender
        self.text = text
        self.sentAt = sentAt
    }
}

/// Result of counting one failed login against an account.
public enum FailedLoginOutcome: Sendable, Hashable {
    /// No account has that name; nothing was recorded.
    case unknownAccount
    /// The failure was counted; the account is not (newly) locked.
    case counted(failedAttempts: Int)
    /// This failure reached the threshold: the account is now locked and its counter reset.
    case locked(until: Date)

    /// Whether this very call locked the account.
    public var justLocked: Bool {
        if case .locked = self { return true }
        return false
    }
}

/// Answer to `ChatStore.claimLoginAttempt`.
public enum LoginAttemptClaim: Sendable, Hashable {
    /// No account has that name; nothing was recorded.
    case unknownAccount
    /// The account is locked (until then): no check may run.
    case locked(until: Date)
    /// The check may run; it is attempt number `attempt` in a row (1-based), already counted.
    case claimed(attempt: Int)
}

/// How a claimed password check ended.
public enum LoginAttemptOutcome: Sendable, Hashable {
    /// The password matched.
    case succeeded
    /// The password did not match.
    case failed
    /// The check never compared a password (hasher busy, stored hash refused, shutdown).
    case abandoned
}

/// Errors of the storage layer, independent of the backend.
public enum StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// An operation referenced an account that does not exist (foreign key).
    case unknownAccount
    /// The database was written by a newer version of Parley than this one understands.
    case schemaTooNew(found: Int, supported: Int)
    /// Opening or configuring the database failed.
    case setupFailed(String)
    /// Any other backend failure, with the backend's message.
    case backend(String)

    public var description: String {
        switch self {
        case .unknownAccount: "no such account"
        case .schemaTooNew(let found, let supported):
            "database schema version \(found) is newer than supported version \(supported)"
        case .setupFailed(let message): "store setup failed: \(message)"
        case .backend(let message): "store error: \(message)"
        }
    }
}
