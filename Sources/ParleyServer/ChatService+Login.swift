import Foundation
import Logging
import ParleyCrypto
import ParleyProtocol
import ParleyStore

extension ChatService {
    /// Checks or registers an account. Errors are protocol codes, ready to send.
    ///
    /// The order is what makes "three wrong passwords" exact: an address in back-off is refused
    /// without hashing; then the login waits for its name's turn (one check in flight per name);
    /// the store claims the attempt atomically, refusing a locked name, before any hash; and the
    /// claim is settled before the turn passes on, so the third failure has locked the name before
    /// a fourth check can start. The turn is given back whatever happens (`defer`).
    func authenticate(username: String, password: String, address: String?) async -> Result<Authenticated, ProtocolError> {
        guard Validation.isValidUsername(username) else { return .failure(ProtocolError(.invalidUsername)) }
        guard Validation.isValidPassword(password) else { return .failure(ProtocolError(.invalidPasswordFormat)) }
        let name = Validation.canonicalUsername(username)
        if let refusal = addressRefusal(address, name: name) { return .failure(refusal) }
        switch await admission.enter(name) {
        case .admitted:
            break
        case .busy:
            logger.notice("login refused: too many logins waiting for this name", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.rateLimited, "Error. Too many logins for this name at once, please try again shortly"))
        case .cancelled, .closed:
            // The connection is gone or the server is stopping: nobody reads this answer.
            return .failure(ProtocolError(.internal))
        }
        defer { admission.leave(name) }
        // The address may have tripped while this login waited for its turn.
        if let refusal = addressRefusal(address, name: name) { return .failure(refusal) }
        do {
            guard let account = try await store.account(named: name) else {
                return try await register(name: name, displayName: username, password: password, address: address)
            }
            return try await check(account, password: password, address: address)
        } catch PasswordService.Failure.busy {
            logger.warning("login refused: too many logins waiting for the hasher")
            return .failure(ProtocolError(.rateLimited, "Error. The server is busy, please try again shortly"))
        } catch let error as CryptoError {
            // A stored hash this server would not have written (tampered, imported, or above its
            // cost): the user cannot log in until an operator resets the password.
            logger.error("login failed: stored password hash refused: \(error)", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.internal, "Error. This account's stored password cannot be checked; ask the server operator"))
        } catch {
            logger.error("login failed: \(error)", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.internal))
        }
    }

    private func addressRefusal(_ address: String?, name: String) -> ProtocolError? {
        guard case .refused(let retryAfter) = admission.verdict(for: address) else { return nil }
        let seconds = max(1, (retryAfter.nanoseconds + 999_999_999) / 1_000_000_000)
        logger.notice("login refused: address in back-off after failed logins",
                      metadata: ["user": "\(name)", "peer": "\(address ?? "?")"])
        return ProtocolError(.rateLimited, "Error. Too many failed logins from your address; try again in \(seconds) s")
    }

    private func register(name: String, displayName: String, password: String, address: String?) async throws
        -> Result<Authenticated, ProtocolError>
    {
        guard configuration.registrationOpen else {
            // Same cost as a real check, so timing does not tell which names exist; and it counts
            // as a failure, so guessing names costs the address like guessing passwords.
            _ = try? await passwords.verify(password, against: passwords.decoyHash)
            admission.recordFailure(from: address)
            return .failure(ProtocolError(.registrationClosed))
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
        let name = account.name
        let threshold = configuration.lockoutThreshold
        let lockDuration = configuration.blockDuration.seconds
        let attempt: Int
        switch try await store.claimLoginAttempt(name: name, now: Date(), threshold: threshold, lockDuration: lockDuration) {
        case .claimed(let number):
            attempt = number
        case .locked:
            logger.notice("login refused: account locked", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.accountLocked))
        case .unknownAccount:
            return .failure(ProtocolError(.internal))
        }
        let settle = { (outcome: LoginAttemptOutcome) in
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
                logger.notice("account locked after failed logins", metadata: ["user": "\(name)"])
                return .failure(ProtocolError(.accountLockedNow))
            }
            logger.info("login failed: wrong password", metadata: ["user": "\(name)"])
            return .failure(ProtocolError(.wrongPassword))
        }
        try await settle(.succeeded)
        if passwords.needsRehash(account.passwordHash), let upgraded = try? await passwords.hash(password) {
            // Best effort: a busy hasher must not turn a right password into a refusal.
            _ = try? await store.updatePasswordHash(name: name, passwordHash: upgraded)
        }
        return .success(try await authenticated(account, created: false))
    }

    private func authenticated(_ account: Account, created: Bool) async throws -> Authenticated {
        async let blocks = store.blockedUsers(by: account.name)
        async let blockedBy = store.usersBlocking(account.name)
        return Authenticated(
            name: account.name, displayName: account.displayName, created: created,
            blocks: try await blocks, blockedBy: try await blockedBy)
    }
}
