import Atomics
import Logging

/// The process's log level, changed by a reload: every logger made by `ReloadableLogHandler`
/// reads it per log call (one relaxed atomic load, no lock).
public final class LogLevelControl: Sendable {
    private let index: ManagedAtomic<Int>

    public init(_ level: Logger.Level) {
        index = ManagedAtomic(Self.levels.firstIndex(of: level) ?? 2)
    }

    public var level: Logger.Level {
        get { Self.levels[index.load(ordering: .relaxed)] }
        set { index.store(Self.levels.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }

    private static let levels = Logger.Level.allCases
}

/// A stream log handler whose level is the shared `LogLevelControl`'s, not a per-logger copy.
public struct ReloadableLogHandler: LogHandler {
    private var inner: StreamLogHandler
    private let control: LogLevelControl

    /// Logs to standard error.
    public static func standardError(label: String, control: LogLevelControl) -> ReloadableLogHandler {
        var inner = StreamLogHandler.standardError(label: label)
        inner.logLevel = .trace  // the control filters; the stream writes what it is given
        return ReloadableLogHandler(inner: inner, control: control)
    }

    public var logLevel: Logger.Level {
        get { control.level }
        // A logger asking for its own level would change everyone's: levels change only by reload.
        set {}
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        inner.log(event: event)
    }
}
