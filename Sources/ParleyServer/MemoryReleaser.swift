import Dispatch
import NIOConcurrencyHelpers
import NIOCore
internal import CParleyShims

/// Hands heap memory freed by connection churn back to the operating system.
///
/// Every TLS handshake allocates tens of KiB for a moment (OpenSSL's handshake state, and a record
/// buffer per read under `SSL_MODE_RELEASE_BUFFERS`); the objects a connection keeps land between
/// those short-lived blocks, so after a burst of logins glibc's heap holds free holes it never
/// returns: 49 MB of 240 after 10,000 logins, measured. `malloc_trim` releases the free pages in
/// the middle of the heap as well as at its end. It takes a few milliseconds on a large heap and
/// holds the allocator's locks meanwhile, so it runs off the event loops and only after real churn,
/// never on a quiet server.
final class MemoryReleaser: Sendable {
    private struct Churn {
        /// Connections opened or closed since the last release.
        var sinceRelease = 0
        /// The same since the last check.
        var sinceCheck = 0
    }
    private let churn = NIOLockedValueBox(Churn())
    private let threshold: Int
    private let queue = DispatchQueue(label: "parley.memory-release", qos: .utility)
    private let task: NIOLockedValueBox<RepeatedTask?> = NIOLockedValueBox(nil)

    /// - Parameters:
    ///   - threshold: connections opened or closed between two checks that make a release worth it.
    init(threshold: Int = 512) {
        self.threshold = threshold
    }

    /// Checks every `interval` on `loop`; the release itself runs on a utility queue.
    func start(on loop: EventLoop, interval: TimeAmount = .seconds(10)) {
        let repeated = loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            releaseIfChurned()
        }
        task.withLockedValue { $0 = repeated }
    }

    func stop() {
        task.withLockedValue { $0?.cancel(); $0 = nil }
    }

    /// Called for each connection opened and each closed.
    func connectionChurned() {
        churn.withLockedValue {
            $0.sinceRelease += 1
            $0.sinceCheck += 1
        }
    }

    /// Releases now if enough connections came or went since the last release and the churn has
    /// settled (a quiet interval), or if a long burst has gone on for 16 thresholds; returns whether
    /// it did. Releasing in the middle of a burst would only see the holes refilled.
    @discardableResult
    func releaseIfChurned() -> Bool {
        let due = churn.withLockedValue { c -> Bool in
            defer { c.sinceCheck = 0 }
            let settled = c.sinceCheck < max(threshold / 8, 1)
            guard c.sinceRelease >= threshold, settled || c.sinceRelease >= 16 * threshold else { return false }
            c.sinceRelease = 0
            return true
        }
        if due { queue.async { Self.release() } }
        return due
    }

    private static func release() {
        _ = parley_malloc_trim(0)
    }
}
