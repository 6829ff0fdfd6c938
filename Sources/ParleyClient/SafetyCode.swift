import ParleyCrypto
import ParleyProtocol

/// The commit-then-reveal safety code of a private session (see SECURITY.md, "Private sessions").
///
/// The connecting side commits to a random value before it sees the accepting side's, and the
/// accepting side sends its own before it sees the committed one, so neither end (nor a machine in
/// the middle playing one end) can steer the code: it gets one guess per session, 1 in 10^6.
public enum SafetyCode {
    // Domain separation: the commitment and the code hash the same inputs in different roles.
    // All inputs after the label have fixed lengths, so the concatenation is unambiguous.
    private static let commitLabel = Array("parley private commitment v1\u{0}".utf8)
    private static let codeLabel = Array("parley private safety code v2\u{0}".utf8)

    /// Length of the TLS exporter secret the exchange is bound to (`TLSHandler` exports 32 bytes).
    public static let exporterByteCount = 32

    /// A fresh random value from OpenSSL's DRBG.
    public static func freshNonce() -> SafetyValue {
        SafetyValue(bytes: SecureRandom.bytes(count: SafetyValue.byteCount))!
    }

    /// SHA-256(label || exporter || nonce). The exporter ties it to this TLS session, so a
    /// commitment seen in one session is worthless in another.
    public static func commitment(to nonce: SafetyValue, exporter: [UInt8]) -> SafetyValue {
        SafetyValue(bytes: SHA256.digest(commitLabel + exporter + nonce.bytes))!
    }

    /// Whether `nonce` is the value `commitment` was made to in this session (constant time).
    public static func opens(_ commitment: SafetyValue, with nonce: SafetyValue, exporter: [UInt8]) -> Bool {
        constantTimeEquals(Self.commitment(to: nonce, exporter: exporter).bytes, commitment.bytes)
    }

    /// Six digits shown as "123 456": SHA-256(label || exporter || connecting nonce || accepting
    /// nonce), first 8 bytes as a big-endian integer, mod 10^6. 2^64 is not a multiple of 10^6, so
    /// some codes are likelier than others by at most 10^6 / 2^64 (~5e-14): nothing worth a retry loop.
    public static func code(exporter: [UInt8], connecting: SafetyValue, accepting: SafetyValue) -> String {
        let digest = SHA256.digest(codeLabel + exporter + connecting.bytes + accepting.bytes)
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let digits = String(value % 1_000_000)
        let padded = String(repeating: "0", count: 6 - digits.count) + digits
        return padded.prefix(3) + " " + padded.suffix(3)
    }
}
