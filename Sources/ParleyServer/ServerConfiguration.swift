import Foundation
import NIOCore
import ParleyCrypto
import ParleyPostgres
import ParleyProtocol

/// Everything a running server is told at start; immutable afterwards.
public struct ServerConfiguration: Sendable {
    /// Address to listen on.
    public var host: String = "127.0.0.1"
    /// TCP port (0 picks a free one, for tests).
    public var port: Int = 3331
    /// How long three wrong passwords lock a name.
    public var blockDuration: TimeAmount = .seconds(10)
    /// Idle time (no command from the user) after which the server logs a user out.
    public var idleTimeout: TimeAmount = .seconds(120)
    /// Server certificate (leaf, PEM) and its private key (mode 0600).
    public var certificatePath: String = "certs/server.pem"
    public var privateKeyPath: String = "certs/server.key"
    /// The database: a SQLite file or a PostgreSQL URL.
    public var database: StoreLocation = .sqlite(path: "parley.sqlite")
    /// The PostgreSQL password (from PARLEY_DB_PASSWORD or --db-password-file); prints as <redacted>.
    public var databasePassword: DatabasePassword?
    /// The SQLite file, for callers that only know SQLite; setting it selects SQLite.
    public var databasePath: String {
        get { if case .sqlite(let path) = database { path } else { "" } }
        set { database = .sqlite(path: newValue) }
    }
    /// Whether unknown names register on first login.
    public var registrationOpen: Bool = true
    /// scrypt cost for new hashes; lower than `.production` only in tests and benchmarks.
    public var hashParameters: PasswordHasher.Parameters = .production
    /// Wrong passwords in a row that lock a name.
    public var lockoutThreshold: Int = 3
    /// Longest frame accepted before parsing.
    public var maxFrameBytes: Int = Limits.maxFrameBytes
    /// Malformed frames in a row after which the connection is closed.
    public var maxBadFramesInARow: Int = 10
    /// Bytes queued to a client that stopped reading before it is disconnected.
    public var maxOutboundBacklog: Int = 4 * 1024 * 1024
    /// Logins waiting for a hashing thread beyond which new logins are refused (rate_limited).
    public var maxPendingHashes: Int = 256
    /// Threads that compute password hashes (never the event loops).
    public var hashingThreads: Int = max(1, System.coreCount)
    /// Event loop threads.
    public var eventLoopThreads: Int = System.coreCount
    /// Time allowed for the TLS handshake.
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Time allowed between connecting and logging in.
    public var loginTimeout: TimeAmount = .seconds(60)
    /// Under load, flush passes are at least this far apart (more messages per TLS record and
    /// write); a quiet server still flushes at the end of each loop pass.
    public var minFlushInterval: TimeAmount = .zero
    /// Offline messages sent per batch at login.
    public var offlineBatchSize: Int = 256
    /// How long a private-session request waits for the other user's answer; then it counts as declined.
    public var privateAnswerTimeout: TimeAmount = .seconds(30)
    /// How long a `startprivate` relayed to another node waits for that node to file it before
    /// the requester hears ok anyway (a node that died, or one too old to answer).
    public var remoteFilingTimeout: TimeAmount = .seconds(3)
    /// Per-source-address back-off for failed password checks (refused with `rate_limited`, no
    /// hashing); loopback is not exempt. The name lock (`lockoutThreshold`) is separate.
    public var addressBackoff = AddressBackoffPolicy()
    /// Logins that may wait for one name while its password is checked; more are refused (`rate_limited`).
    public var maxLoginsWaitingPerName: Int = 16
    /// Private-session requests waiting for an answer that one user may have made and been sent,
    /// together; more are refused (`too_many_requests`).
    public var maxPendingPrivateRequests: Int = 4
    /// Unix socket for the operator (`parley-server admin ...`), created mode 0600; nil: none.
    public var adminSocketPath: String? = nil
    /// What the admin socket's `reload` does (the executable raises SIGHUP); nil: `reload` is
    /// refused as unavailable. Called on an event loop, so it must return at once.
    public var adminReload: (@Sendable () -> Void)? = nil
    /// Per-address connection, command, registration and offline-queue limits (one value, so a
    /// reload can swap them together).
    public var limits = ServerLimits()
    /// Where to serve Prometheus metrics over plain HTTP (`GET /metrics`); nil (the default): off.
    public var metricsListen: MetricsAddress? = nil
    /// This node's name in the cluster's `nodes` table and logs (a PostgreSQL database only); nil: the host name.
    public var nodeName: String? = nil
    /// How long a cluster node's lease lasts without renewal (renewed every third of it): a node
    /// that dies is noticed by the others within about this long. Short only in tests.
    public var clusterLease: Duration = .seconds(10)
    /// Test hook: sees every request the server decoded, in order (e.g. to assert that private text
    /// never reaches the server). Nil in production; called on event loops, so it must be quick.
    public var requestObserver: (@Sendable (Request) -> Void)? = nil

    public init() {}
}

/// A host and port for the metrics listener, parsed from `HOST:PORT` (IPv6 as `[ADDR]:PORT`).
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Nil unless `text` is `HOST:PORT` with a port 0-65535.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
