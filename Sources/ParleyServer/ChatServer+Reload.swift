import Logging
import NIOCore
import ParleyStore
import ParleyTLS

/// Why the server would not start, beyond a TLS or store error.
public enum ServerStartError: Error, Sendable, CustomStringConvertible {
    /// `PRAGMA quick_check` found problems in the database file.
    case damagedDatabase(path: String, problems: [String])

    public var description: String {
        switch self {
        case .damagedDatabase(let path, let problems):
            let shown = problems.prefix(3).joined(separator: "; ")
            return "database \(path) failed its integrity check (PRAGMA quick_check: \(shown)\(problems.count > 3 ? "; ..." : "")); "
                + "restore it from a backup (see docs/OPERATIONS.md)"
        }
    }
}

extension ChatServer {
    /// The reloadable settings in force now.
    public var runtimeSettings: RuntimeSettings { service.runtime.current }

    /// Takes new reloadable settings at once: the next login, failed password or new connection
    /// reads them; nothing already open is touched.
    public func apply(_ settings: RuntimeSettings) {
        let before = service.runtime.current.limits
        service.runtime.replace(with: settings)
        if settings.limits != before {
            service.connections.update(settings.limits)
            service.admission.updateRegistrations(perHour: settings.limits.maxRegistrationsPerAddressPerHour)
        }
    }

    /// Builds a TLS context from the files (off the event loops) and makes new handshakes use it;
    /// connections already open keep theirs. On any error the running context stays and the error
    /// is thrown for the caller to report.
    public func reloadCertificate(certificatePath: String, privateKeyPath: String) async throws {
        let context = try await Task.detached {
            try TLSContext(role: .server(certificateChainPath: certificatePath, privateKeyPath: privateKeyPath))
        }.value
        tls.withLockedValue { current in
            current = TLSHandler.Settings(
                context: context, handshakeTimeout: current.handshakeTimeout, logger: logger,
                handshakeFailed: current.handshakeFailed)
        }
    }
}
