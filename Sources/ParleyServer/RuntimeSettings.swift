import NIOConcurrencyHelpers
import NIOCore

/// The settings a running server takes on a reload (SIGHUP) without dropping a connection. Each
/// reader takes the current snapshot per use, so one login or one new connection sees one
/// consistent set; nothing holds a reference to an older one.
public struct RuntimeSettings: Sendable, Equatable {
    /// Whether unknown names register on first login (read per login).
    public var registrationOpen: Bool
    /// How long three wrong passwords lock a name (read per failed login).
    public var blockDuration: TimeAmount
    /// Idle time before a user is logged out (read when a connection opens: connections already
    /// open keep the timeout they started with).
    public var idleTimeout: TimeAmount
    /// Connection, command, registration and queue limits (connection and registration budgets
    /// start full again on a change; the command rate applies to connections opened afterwards).
    public var limits: ServerLimits

    public init(registrationOpen: Bool, blockDuration: TimeAmount, idleTimeout: TimeAmount, limits: ServerLimits = ServerLimits()) {
        self.registrationOpen = registrationOpen
        self.blockDuration = blockDuration
        self.idleTimeout = idleTimeout
        self.limits = limits
    }
}

extension ServerConfiguration {
    /// The part of this configuration a reload may change.
    public var runtimeSettings: RuntimeSettings {
        get {
            RuntimeSettings(
                registrationOpen: registrationOpen, blockDuration: blockDuration, idleTimeout: idleTimeout, limits: limits)
        }
        set {
            registrationOpen = newValue.registrationOpen
            blockDuration = newValue.blockDuration
            idleTimeout = newValue.idleTimeout
            limits = newValue.limits
        }
    }
}

/// The one owner of the current `RuntimeSettings`: replaced whole, read whole.
final class RuntimeSettingsBox: Sendable {
    private let box: NIOLockedValueBox<RuntimeSettings>

    init(_ initial: RuntimeSettings) { box = NIOLockedValueBox(initial) }

    var current: RuntimeSettings { box.withLockedValue { $0 } }

    func replace(with settings: RuntimeSettings) { box.withLockedValue { $0 = settings } }
}
