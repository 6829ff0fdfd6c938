import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyCrypto

/// Runs scrypt on its own bounded thread pool so that a burst of logins never stalls an event loop.
final class PasswordService: Sendable {
    enum Failure: Error { case busy }

    private let pool: NIOThreadPool
    private let hasher: PasswordHasher
    private let pending = NIOLockedValueBox(0)
    private let maxPending: Int
    /// Hashes waiting or running, for the metrics.
    private let queueDepth: Meter
    /// A hash of a random password at the configured cost, checked when there is no account, so
    /// that refusing an unknown name takes as long as refusing a wrong password.
    let decoyHash: String

    init(parameters: PasswordHasher.Parameters, threads: Int, maxPending: Int, queueDepth: Meter = ServerMetrics.disabled.hasherQueue) {
        self.queueDepth = queueDepth
        self.pool = NIOThreadPool(numberOfThreads: threads)
        self.hasher = PasswordHasher(parameters: parameters)
        self.maxPending = maxPending
        self.decoyHash = (try? hasher.hash(password: SecureRandom.hex(bytes: 16))) ?? ""
        pool.start()
    }

    func shutdown() async throws {
        try await pool.shutdownGracefully()
    }

    /// A new PHC string for `password`.
    func hash(_ password: String) async throws -> String {
        try await run { [hasher] in try hasher.hash(password: password) }
    }

    /// Whether `password` matches `phc` (constant-time compare inside the hasher).
    func verify(_ password: String, against phc: String) async throws -> Bool {
        try await run { [hasher] in try hasher.verify(password: password, against: phc) }
    }

    /// Whether a stored hash is weaker than today's setting.
    func needsRehash(_ phc: String) -> Bool { hasher.needsRehash(phc: phc) }

    private func run<T: Sendable>(_ work: @Sendable @escaping () throws -> T) async throws -> T {
        let admitted = pending.withLockedValue { count -> Bool in
            guard count < maxPending else { return false }
            count += 1
            return true
        }
        guard admitted else { throw Failure.busy }
        queueDepth.increment()
        defer {
            pending.withLockedValue { $0 -= 1 }
            queueDepth.decrement()
        }
        return try await pool.runIfActive(work)
    }
}
