import ParleyProtocol

/// The log line of one failed login, in a fixed shape a fail2ban filter can match:
/// `parley: login failed user=<name> address=<ip> reason=<code>`. The name is whatever the client
/// sent, so it is reduced to the characters a valid name may have: no space, newline or control
/// character can end the line early or forge a second one.
struct FailedLoginLine: CustomStringConvertible {
    let user: String
    let address: String?
    let reason: ErrorCode

    /// Longest name kept (longer than any valid one, so an invalid name is still recognisable).
    static let maxUserCharacters = 40

    var description: String {
        "parley: login failed user=\(Self.sanitised(user)) address=\(address ?? "-") reason=\(reason.rawValue)"
    }

    static func sanitised(_ user: String) -> String {
        var out = ""
        for scalar in user.unicodeScalars.prefix(maxUserCharacters) {
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "_", "-", ".": out.unicodeScalars.append(scalar)
            default: out.append("?")
            }
        }
        return out.isEmpty ? "-" : out
    }
}
