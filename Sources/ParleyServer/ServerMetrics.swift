import CoreMetrics
import Metrics
import ParleyProtocol
import ParleyTLS

/// The server's metrics, made once from the factory the server was given (Prometheus when
/// `--metrics-listen` is on, no-ops otherwise), so tests run servers side by side without touching
/// the process-wide `MetricsSystem`. The fan-out counts per flush pass, never per delivery.
public final class ServerMetrics: Sendable {
    let connectionsOpen: Meter
    let usersLoggedIn: Meter
    let loginsOK: Counter
    let loginsFailed: Counter
    let loginsLocked: Counter
    let messages: Counter
    let broadcasts: Counter
    let deliveries: Counter
    let offlineQueued: Meter
    let hasherQueue: Meter
    let commandsRateLimited: Counter
    let connectionsTooMany: Counter
    let connectionsTooFast: Counter
    let registrationsRefused: Counter
    let recipientQueueFull: Counter
    let floodingDisconnects: Counter
    let slowConsumerDisconnects: Counter
    let flushPassSize: Recorder
    private let handshakeFailures: [HandshakeFailure: Counter]

    /// Why a TLS handshake failed, as a label value.
    enum HandshakeFailure: String, CaseIterable {
        case timeout, notTLS = "not_tls", closed, certificate, failed

        init(_ error: TLSError) {
            switch error {
            case .handshakeTimeout: self = .timeout
            case .notTLS: self = .notTLS
            case .closedDuringHandshake, .uncleanShutdown: self = .closed
            case .certificateVerificationFailed: self = .certificate
            default: self = .failed
            }
        }
    }

    /// Metrics made by `factory`; pass `NOOPMetricsHandler.instance` for none.
    public init(factory: any MetricsFactory) {
        func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: dimensions, factory: factory)
        }
        func meter(_ label: String) -> Meter { Meter(label: label, factory: factory) }
        connectionsOpen = meter("parley_connections_open")
        usersLoggedIn = meter("parley_users_logged_in")
        loginsOK = counter("parley_logins_total", [("result", "ok")])
        loginsFailed = counter("parley_logins_total", [("result", "failed")])
        loginsLocked = counter("parley_logins_total", [("result", "locked")])
        messages = counter("parley_messages_total")
        broadcasts = counter("parley_broadcasts_total")
        deliveries = counter("parley_deliveries_total")
        offlineQueued = meter("parley_offline_queue_depth")
        hasherQueue = meter("parley_hasher_queue_depth")
        commandsRateLimited = counter("parley_refused_total", [("limit", "commands")])
        connectionsTooMany = counter("parley_refused_total", [("limit", "connections_per_address")])
        connectionsTooFast = counter("parley_refused_total", [("limit", "new_connections_per_minute")])
        registrationsRefused = counter("parley_refused_total", [("limit", "registrations_per_hour")])
        recipientQueueFull = counter("parley_refused_total", [("limit", "recipient_queue")])
        floodingDisconnects = counter("parley_disconnects_total", [("reason", "flooding")])
        slowConsumerDisconnects = counter("parley_disconnects_total", [("reason", "slow_consumer")])
        flushPassSize = Recorder(label: Self.flushPassLabel, dimensions: [], aggregate: true, factory: factory)
        handshakeFailures = Dictionary(uniqueKeysWithValues: HandshakeFailure.allCases.map {
            ($0, counter("parley_handshakes_failed_total", [("reason", $0.rawValue)]))
        })
    }

    /// Nothing recorded (the default when metrics are off).
    public static let disabled = ServerMetrics(factory: NOOPMetricsHandler.instance)

    /// The flush-pass histogram's label (its buckets are set on the Prometheus factory).
    public static let flushPassLabel = "parley_flush_pass_sessions"
    /// Buckets for the flush-pass histogram: sessions flushed in one pass.
    public static let flushPassBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384]

    func handshakeFailed(_ reason: HandshakeFailure) {
        handshakeFailures[reason]?.increment()
    }

    func refused(_ code: ErrorCode) {
        switch code {
        case .tooManyConnections: connectionsTooMany.increment()
        case .tooManyNewConnections: connectionsTooFast.increment()
        default: break
        }
    }
}
