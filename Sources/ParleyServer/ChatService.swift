import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ParleyCluster
import ParleyCrypto
import ParleyProtocol
import ParleyStore

/// The only door to the store and the password hasher: connection handlers start the commands
/// that need them through `start`, which counts the task and applies its outcome back on the
/// handler's event loop; nothing here touches a channel.
final class ChatService: Sendable {
    private let store: any ChatStore
    private let passwords: PasswordService
    let hub: Hub
    /// The other nodes sharing the database (`SingleNodeBus` when there are none).
    let cluster: any ClusterBus
    let configuration: ServerConfiguration
    /// What a reload can change (registration, block duration, idle timeout); read per use.
    let runtime: RuntimeSettingsBox
    let logger: Logger
    /// Which logins may check a password now (one per name, none from an address in back-off).
    let admission: LoginAdmission
    /// Tasks under way off the event loops (see `InFlightWork`).
    private let work = InFlightWork()
    /// Connection handlers alive: each adds itself at init and removes itself at deinit.
    let handlers = NIOLockedValueBox(0)
    /// Returns heap freed by connection churn to the system (see `MemoryReleaser`).
    let memory = MemoryReleaser()
    /// What the server counts (no-ops when metrics are off).
    let metrics: ServerMetrics
    /// Connections per source address, decided at accept (see `ConnectionLimiter`).
    let connections: ConnectionLimiter
    /// `startprivate` requests relayed to another node, waiting for it to file them.
    let filings = PendingFilings()

    /// A connection handler was created.
    func connectionOpened() {
        handlers.withLockedValue { $0 += 1 }
        memory.connectionChurned()
    }

    /// A connection handler was freed.
    func connectionFreed() {
        handlers.withLockedValue { $0 -= 1 }
        memory.connectionChurned()
    }

    /// What a successful password check hands to the connection.
    struct Authenticated: Sendable {
        let name: String
        let displayName: String
        let created: Bool
        let blocks: Set<String>
        let blockedBy: Set<String>
    }

    init(store: any ChatStore, passwords: PasswordService, hub: Hub, cluster: any ClusterBus,
         configuration: ServerConfiguration, logger: Logger, admission: LoginAdmission, metrics: ServerMetrics = .disabled) {
        self.cluster = cluster
        self.metrics = metrics
        self.connections = ConnectionLimiter(limits: configuration.limits)
        self.store = store
        self.passwords = passwords
        self.hub = hub
        self.configuration = configuration
        self.runtime = RuntimeSettingsBox(configuration.runtimeSettings)
        self.logger = logger
        self.admission = admission
    }

    // MARK: running work off the event loops

    /// Runs `work` in a counted task, then `apply` on `loop` with its outcome, or with nil when the
    /// server began stopping meanwhile (nothing more must start). The task stays counted until the
    /// outcome is applied, so a login cannot go online on a stopping loop. Returns nil, starting
    /// nothing, once the server is stopping: the task could outlive the loop.
    func start<T: Sendable>(
        on loop: EventLoop, _ job: @escaping @Sendable (ChatService) async -> T, then apply: @escaping (T?) -> Void
    ) -> Task<Void, Never>? {
        let inFlight = work
        guard inFlight.enter() else { return nil }
        let promise = loop.makePromise(of: T.self)
        let task = Task { [self] in promise.succeed(await job(self)) }
        promise.futureResult.assumeIsolated().whenSuccess { value in
            defer { inFlight.leave() }
            apply(inFlight.isClosed ? nil : value)
        }
        return task
    }

    /// Runs bookkeeping nobody waits for (login history, a message kept after a missed delivery),
    /// counted so the store does not close under it.
    func background(_ job: @escaping @Sendable (ChatService) async -> Void) {
        let service = self
        work.detached { await job(service) }
    }

    /// Stops admitting logins, cancels queued hashes, and waits for the tasks under way; then the
    /// store closes (before the event loops its calls complete on stop).
    func shutdown() async throws {
        // Waiting logins are answered first, so none is admitted only to find the hasher gone.
        admission.close()
        try? await passwords.shutdown()
        await work.closeAndDrain()
        try await store.close()
    }

    // MARK: commands

    /// Opens a login-history record.
    func recordLogin(_ name: String) async {
        try? await store.recordLogin(name: name, at: Date())
    }

    /// Closes the user's open login-history record.
    func recordLogout(_ name: String) async {
        _ = try? await store.recordLogout(name: name, at: Date())
    }

    /// The next batch of stored messages for `name` after delivery id `lastID`; nil if the store failed.
    func pendingMessages(for name: String, after lastID: Int64) async -> [StoredMessage]? {
        try? await store.pendingMessages(for: name, after: lastID, limit: configuration.offlineBatchSize)
    }

    /// The first batch at login, and whether the account still exists and is enabled. An operator's
    /// `disable` that lands while the password is being checked finds nobody online to log out, so
    /// the login looks again once it is online: whichever of the two comes second sees the other.
    func loginDelivery(for name: String) async -> (enabled: Bool, batch: [StoredMessage]?) {
        do {
            guard let account = try await store.account(named: name), !account.disabled else { return (false, nil) }
            return (true, try await store.pendingMessages(for: name, after: 0, limit: configuration.offlineBatchSize))
        } catch {
            // The account was read a moment ago at login; a failing store does not log anyone out.
            return (true, nil)
        }
    }

    /// Disables (or enables) an account durably: true if done, false if there is no such account,
    /// nil if the store failed.
    func setDisabled(_ name: String, _ disabled: Bool) async -> Bool? {
        do {
            return try await store.setDisabled(name: name, disabled: disabled)
        } catch {
            logger.error("disabling an account failed: \(error)", metadata: ["user": "\(name)"])
            return nil
        }
    }

    /// Deletes a stored message its recipient acked (idempotent); false if the store failed, which
    /// leaves it for next time and must not be answered with ok.
    func acknowledge(_ delivery: Int64, for name: String) async -> Bool {
        do {
            if try await store.acknowledge(delivery: delivery, for: name) { metrics.offlineQueued.decrement() }
            return true
        } catch {
            logger.error("deleting an acked message failed: \(error)", metadata: ["user": "\(name)"])
            return false
        }
    }

    /// Stores a message for a user who is not online, refusing it (`recipient_queue_full`) when
    /// they already have `limits.maxQueuedPerRecipient` waiting. `withinQuota: false` is for a
    /// message already answered `ok` (its recipient left mid-delivery): it is kept regardless,
    /// so nothing the sender was told went through is dropped.
    func storeOffline(to recipient: String, from sender: String, text: String, withinQuota: Bool = true) async -> ProtocolError? {
        do {
            let quota = withinQuota ? runtime.current.limits.maxQueuedPerRecipient : Int.max
            guard try await store.enqueueOfflineMessage(to: recipient, from: sender, text: text, sentAt: Date(), quota: quota) != nil
            else {
                metrics.recipientQueueFull.increment()
                logger.notice("offline message refused: recipient queue full", metadata: ["user": "\(recipient)"])
                return ProtocolError(.recipientQueueFull)
            }
            metrics.offlineQueued.increment()
            return nil
        } catch StoreError.unknownAccount {
            return ProtocolError(.unknownUser)
        } catch {
            logger.error("storing offline message failed: \(error)")
            return ProtocolError(.internal)
        }
    }

    /// Blocks or unblocks, durably first, then in the online view.
    func setBlock(blocker: String, blocked: String, active: Bool) async -> ProtocolError? {
        do {
            let changed =
                active
                ? try await store.block(blocker: blocker, blocked: blocked)
                : try await store.unblock(blocker: blocker, blocked: blocked)
            guard changed else {
                if !active, try await store.account(named: blocked) == nil { return ProtocolError(.unknownUser) }
                return ProtocolError(active ? .alreadyBlocked : .notBlocked)
            }
            hub.noteBlock(blocker: blocker, blocked: blocked, active: active)
            cluster.publish(.block(blocker: blocker, blocked: blocked, active: active))
            return nil
        } catch StoreError.unknownAccount {
            return ProtocolError(.unknownUser)
        } catch {
            logger.error("block change failed: \(error)")
            return ProtocolError(.internal)
        }
    }

    /// Whether an account exists (for errors that must name unknown users).
    func accountExists(_ name: String) async -> Bool {
        (try? await store.account(named: name)) != nil
    }

    /// Users online now or within the last `seconds`, as seen by `viewer`.
    func usersActive(withinLast seconds: Int64, viewer: String) async -> Result<[String], ProtocolError> {
        do {
            let since = Date(timeIntervalSinceNow: -Double(min(seconds, 10 * 365 * 86_400)))
            let recent = try await store.usersActive(since: since)
            let hidden = hub.blockers(of: viewer)
            var names = Set(hub.onlineNames(visibleTo: viewer))
            for name in hub.offline(among: recent) where name != viewer && !hidden.contains(name) {
                names.insert(try await store.account(named: name)?.displayName ?? name)
            }
            return .success(names.sorted())
        } catch {
            logger.error("whoelsesince failed: \(error)")
            return .failure(ProtocolError(.internal))
        }
    }
}

// MARK: - login (here so that the store and the hasher stay private to this file)

extension ChatService {
    /// Checks or registers an account. Errors are protocol codes, ready to send.
    ///
    /// The order is what makes "three wrong passwords" exact: an address in back-off is refused
    /// without hashing; then the login waits for its name's turn (one check in flight per name);
    /// the store claims the attempt atomically, refusing a locked name, before any hash; and the
    /// claim is settled before the turn passes on, so the third failure has locked the name before
    /// a fourth check can start. The turn is given back whatever happens (`defer`).
    func authenticate(username: String, password: String, peer: SocketAddress?) async -> Result<Authenticated, ProtocolError> {
        let result = await checkLogin(username: username, password: password, address: LoginAdmission.addressKey(peer))
        switch result {
        case .success:
            metrics.loginsOK.increment()
        case .failure(let error):
            if error.code == .accountLocked || error.code == .accountLockedNow {
                metrics.loginsLocked.increment()
            } else {
                metrics.loginsFailed.increment()
            }
            // One stable line per failure, for fail2ban (contrib/fail2ban/filter.d/parley.conf).
            logger.notice("\(FailedLoginLine(user: username, address: peer?.ipAddress, reason: error.code))")
        }
        return result
    }

    private func checkLogin(username: String, password: String, address: String?) async -> Result<Authenticated, ProtocolError> {
        guard Validation.isValidUsername(username) else { return .failure(ProtocolError(.invalidUsername)) }
        guard Validation.isValidPassword(password) else { return .failure(ProtocolError(.invalidPasswordFormat)) }
        let name = Validation.canonicalUsername(username)
        return await withTurn(at: name, address: address, doing: "login") {
            guard let account = try await store.account(named: name) else {
                return try await register(name: name, displayName: username, password: password, address: address)
            }
            return try await check(account, password: password, address: address)
        }
    }

    /// Changes `name`'s password after checking `old` exactly as a login checks a password (same
    /// turn, same claim and settle, so wrong old passwords count towards the lockout); the new
    /// hash is made on the hasher's pool. Neither password is ever logged.
    func changePassword(name: String, old: String, new: String, address: String?) async -> Result<Void, ProtocolError> {
        guard Validation.isValidPassword(new) else {
            return .failure(ProtocolError(.invalidPasswordFormat, "Error. The new password must be 8 to 1024 bytes"))
        }
        // Cannot match any stored password, so it is not a guess worth counting (as at login).
        guard Validation.isValidPassword(old) else {
            return .failure(ProtocolError(.invalidPasswordFormat, "Error. The old password is not 8 to 1024 bytes"))
        }
        return await withTurn(at: name, address: address, doing: "password change") {
            guard let account = try await store.account(named: name) else { return .failure(ProtocolError(.internal)) }
            if let refusal = try await verifyCounted(account, password: old, address: address) { return .failure(refusal) }
            let hash = try await passwords.hash(new)
            guard try await store.updatePasswordHash(name: name, passwordHash: hash) else { return .failure(ProtocolError(.internal)) }
            logger.info("password changed", metadata: ["user": "\(name)"])
            return .success(())
        }
    }

    /// Runs a password check for `name` in its turn: an address in back-off is refused without
    /// hashing; then the check waits for the name's turn (one in flight per name) and gives it back
    /// whatever happens. Hasher and store failures become protocol errors here.
    private func withTurn<T>(
        at name: String, address: String?, doing what: String,
        _ body: () async throws -> Result<T, ProtocolError>
    ) async -> Result<T, ProtocolError> {
        if let refusal = addressRefusal(address, name: name) { return .failure(refusal) }
        switch await admission.enter(name) {
        case .admitted:
            break
        case .busy:
            logger.notice("\(what) refused: too many logins waiting for this name", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.rateLimited, "Error. Too many logins for this name at once, please try again shortly"))
        case .cancelled, .closed:
            // The connection is gone or the server is stopping: nobody reads this answer.
            return .failure(ProtocolError(.internal))
        }
        defer { admission.leave(name) }
        // The address may have tripped while this check waited for its turn.
        if let refusal = addressRefusal(address, name: name) { return .failure(refusal) }
        do {
            return try await body()
        } catch PasswordService.Failure.busy {
            logger.warning("\(what) refused: too many logins waiting for the hasher")
            return .failure(ProtocolError(.rateLimited, "Error. The server is busy, please try again shortly"))
        } catch let error as CryptoError {
            // A stored hash this server would not have written (tampered, imported, or above its
            // cost): the user cannot log in until an operator resets the password.
            logger.error("\(what) failed: stored password hash refused: \(error)", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.internal, "Error. This account's stored password cannot be checked; ask the server operator"))
        } catch {
            logger.error("\(what) failed: \(error)", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.internal))
        }
    }

    private func addressRefusal(_ address: String?, name: String) -> ProtocolError? {
        guard case .refused(let retryAfter) = admission.verdict(for: address) else { return nil }
        let seconds = max(1, (retryAfter.nanoseconds + 999_999_999) / 1_000_000_000)
        return ProtocolError(.rateLimited, "Error. Too many failed logins from your address; try again in \(seconds) s")
    }

    private func register(name: String, displayName: String, password: String, address: String?) async throws
        -> Result<Authenticated, ProtocolError>
    {
        guard runtime.current.registrationOpen else {
            // Same cost as a real check, so timing does not tell which names exist; and it counts
            // as a failure, so guessing names costs the address like guessing passwords.
            _ = try? await passwords.verify(password, against: passwords.decoyHash)
            admission.recordFailure(from: address)
            return .failure(ProtocolError(.registrationClosed))
        }
        guard admission.mayRegister(from: address) else {
            metrics.registrationsRefused.increment()
            return .failure(ProtocolError(.tooManyRegistrations))
        }
        let hash = try await passwords.hash(password)
        let created = try await store.createAccount(name: name, displayName: displayName, passwordHash: hash)
        guard let account = try await store.account(named: name) else { return .failure(ProtocolError(.internal)) }
        guard created else {
            // Registered meanwhile by another server on the same database: an ordinary login.
            return try await check(account, password: password, address: address)
        }
        logger.info("account registered", metadata: ["user": "\(name)"])
        return .success(try await authenticated(account, created: true))
    }

    private func check(_ account: Account, password: String, address: String?) async throws
        -> Result<Authenticated, ProtocolError>
    {
        if let refusal = try await verifyCounted(account, password: password, address: address) { return .failure(refusal) }
        if passwords.needsRehash(account.passwordHash), let upgraded = try? await passwords.hash(password) {
            // Best effort: a busy hasher must not turn a right password into a refusal.
            _ = try? await store.updatePasswordHash(name: account.name, passwordHash: upgraded)
        }
        return .success(try await authenticated(account, created: false))
    }

    /// Checks `password` against `account` as one counted attempt: the store claims it (refusing a
    /// locked name) before any hash, and it is settled before the caller's turn passes on. Nil when
    /// it matched; else the refusal to send.
    private func verifyCounted(_ account: Account, password: String, address: String?) async throws -> ProtocolError? {
        let name = account.name
        // Before the claim and the hash: a disabled account costs no hashing and counts no failure.
        // The refusal says no more than `account_locked` already does (that the name exists).
        if account.disabled {
            logger.notice("login refused: account disabled", metadata: ["user": "\(name)"])
            return ProtocolError(.accountDisabled)
        }
        let threshold = configuration.lockoutThreshold
        let lockDuration = TimeInterval(runtime.current.blockDuration.nanoseconds) / 1_000_000_000
        let attempt: Int
        switch try await store.claimLoginAttempt(name: name, now: Date(), threshold: threshold, lockDuration: lockDuration) {
        case .claimed(let number):
            attempt = number
        case .locked:
            logger.notice("password check refused: account locked", metadata: ["user": "\(name)"])
            return ProtocolError(.accountLocked)
        case .unknownAccount:
            return ProtocolError(.internal)
        }
        let settle = { [store] (outcome: LoginAttemptOutcome) in
            try await store.settleLoginAttempt(name: name, attempt: attempt, threshold: threshold, outcome: outcome,
                                               now: Date(), lockDuration: lockDuration)
        }
        let matched: Bool
        do {
            matched = try await passwords.verify(password, against: account.passwordHash)
        } catch {
            // Never compared (hasher busy or shut down, hash refused): not a guess, so not counted.
            try? await settle(.abandoned)
            throw error
        }
        guard matched else {
            admission.recordFailure(from: address)
            try await settle(.failed)
            if attempt >= threshold {
                logger.notice("account locked after failed password checks", metadata: ["user": "\(name)"])
                return ProtocolError(.accountLockedNow)
            }
            logger.info("password check failed: wrong password", metadata: ["user": "\(name)"])
            return ProtocolError(.wrongPassword)
        }
        try await settle(.succeeded)
        return nil
    }

    private func authenticated(_ account: Account, created: Bool) async throws -> Authenticated {
        async let blocks = store.blockedUsers(by: account.name)
        async let blockedBy = store.usersBlocking(account.name)
        return Authenticated(
            name: account.name, displayName: account.displayName, created: created,
            blocks: try await blocks, blockedBy: try await blockedBy)
    }
}
