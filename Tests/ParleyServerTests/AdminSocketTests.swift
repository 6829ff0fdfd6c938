import Foundation
import NIOConcurrencyHelpers
import ParleyCrypto
import ParleyProtocol
import ParleyStore
import ParleyTestSupport
import Testing
@testable import ParleyServer

/// A server with an admin socket in its own directory, and what its reload action saw.
private func withAdminServer(
    reload: Bool = true, _ body: (TestServer, String, NIOLockedValueBox<Int>) async throws -> Void
) async throws {
    let reloads = NIOLockedValueBox(0)
    let certs = try TestCertificates.make()
    defer { certs.remove() }
    let socket = certs.directory.appendingPathComponent("admin.sock").path
    let server = try await TestServer.start {
        $0.adminSocketPath = socket
        if reload { $0.adminReload = { reloads.withLockedValue { $0 += 1 } } }
    }
    do {
        try await body(server, socket, reloads)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
    #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed at shutdown")
}

@Suite("admin socket on an in-process server", .serialized)  // the bind sets the process-wide umask
struct AdminSocketTests {
    @Test func reloadRunsTheInjectedActionAndIsRefusedWithoutOne() async throws {
        try await withAdminServer { _, socket, reloads in
            let reply = try await AdminClient.send(.reload, socket: socket)
            #expect(reply == .ok("reload requested"))
            #expect(reloads.withLockedValue { $0 } == 1)
        }
        try await withAdminServer(reload: false) { _, socket, reloads in
            let reply = try await AdminClient.send(.reload, socket: socket)
            #expect(reply == .error(AdminError(.unavailable, "this server has no reload action")))
            #expect(reloads.withLockedValue { $0 } == 0)
        }
    }

    @Test func unknownLongAndMalformedRequestsGetClearErrors() async throws {
        try await withAdminServer { _, socket, reloads in
            let unknown = try await AdminClient.send(line: "shutdown", socket: socket)
            guard case .error(let error) = unknown.outcome else { Issue.record("accepted: \(unknown)"); return }
            #expect(error.code == .unknownCommand)
            let long = try await AdminClient.send(line: "who " + String(repeating: "x", count: 10_000), socket: socket)
            #expect(long == .error(AdminError(.badRequest, "request longer than \(AdminProtocol.maxRequestBytes) bytes")))
            let noName = try await AdminClient.send(line: "kick", socket: socket)
            #expect(noName == .error(AdminError(.badRequest, "usage: kick NAME")))
            let nobody = try await AdminClient.send(.kick("nobody"), socket: socket)
            #expect(nobody == .error(AdminError(.notOnline, "nobody is not logged in")))
            let unknownUser = try await AdminClient.send(.disable("nobody"), socket: socket)
            #expect(unknownUser == .error(AdminError(.noSuchUser, "no account named nobody")))
            #expect(reloads.withLockedValue { $0 } == 0, "nothing above was a reload")
            // The server still answers after all of that.
            let who = try await AdminClient.send(.who, socket: socket)
            #expect(who == .ok("0 users online"))
        }
    }

    @Test func aDisabledAccountIsRefusedWithoutAPasswordCheckAndCountsNoFailure() async throws {
        try await withAdminServer { server, socket, _ in
            let alice = try await server.loggedIn("alice")
            try await alice.request(.logout)
            let disabled = try await AdminClient.send(.disable("Alice"), socket: socket)
            #expect(disabled == .ok("disabled Alice (not logged in)"))
            for password in ["password-alice", "wrong-password-1", "wrong-password-2", "wrong-password-3"] {
                let client = try await server.client()
                #expect(try await client.login("alice", password).code == .accountDisabled,
                        "the same answer whatever the password, so it tells nothing about it")
            }
            let store = try await SQLiteStore.open(path: server.databasePath)
            let account = try #require(try await store.account(named: "alice"))
            #expect(account.failedAttempts == 0 && account.lockedUntil == nil, "no check ran, so no failure counted")
            #expect(try await store.setDisabled(name: "alice", disabled: false))
            try await store.close()
            let again = try await server.client()
            #expect(try await again.login("alice", "password-alice").isOK, "enabled again, the password works")
        }
    }

    @Test func aDisableThatLandsWhileThePasswordIsCheckedStillLogsTheUserOut() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let path = certs.directory.appendingPathComponent("race.sqlite").path
        let inner = try await SQLiteStore.open(path: path)
        _ = try await inner.createAccount(
            name: "bob", displayName: "Bob", passwordHash: try PasswordHasher(parameters: .testing).hash(password: "password-bob"))
        let store = DisableDuringCheck(inner, disabling: "bob")
        var config = ServerConfiguration()
        config.port = 0
        config.certificatePath = certs.certificatePath
        config.privateKeyPath = certs.keyPath
        config.hashParameters = .testing
        let server = try await ChatServer.start(configuration: config, store: store)
        defer { Task { try? await server.shutdown() } }
        let bob = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        // The login itself succeeds (its check read the account before the disable)...
        #expect(try await bob.login("bob", "password-bob").isOK)
        // ...and the look at the account once online ends it.
        #expect(await bob.next { $0 == .loggedOut(reason: .disabled) } != nil)
        #expect(await bob.waitForClose())
        let next = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await next.login("bob", "password-bob").code == .accountDisabled)
    }
}

/// A store that disables `name` right after its password check succeeds (as an operator's
/// `disable` landing during the check would); everything else goes to the SQLite store.
private final class DisableDuringCheck: ChatStore {
    let inner: SQLiteStore
    let name: String
    init(_ inner: SQLiteStore, disabling name: String) {
        self.inner = inner
        self.name = name
    }

    func settleLoginAttempt(name: String, attempt: Int, threshold: Int, outcome: LoginAttemptOutcome, now: Date,
                            lockDuration: TimeInterval) async throws {
        try await inner.settleLoginAttempt(name: name, attempt: attempt, threshold: threshold, outcome: outcome, now: now,
                                           lockDuration: lockDuration)
        if name == self.name, outcome == .succeeded { try await inner.setDisabled(name: name, disabled: true) }
    }

    func createAccount(name: String, displayName: String, passwordHash: String) async throws -> Bool {
        try await inner.createAccount(name: name, displayName: displayName, passwordHash: passwordHash)
    }
    func account(named name: String) async throws -> Account? { try await inner.account(named: name) }
    func updatePasswordHash(name: String, passwordHash: String) async throws -> Bool {
        try await inner.updatePasswordHash(name: name, passwordHash: passwordHash)
    }
    func listAccounts() async throws -> [Account] { try await inner.listAccounts() }
    func setDisabled(name: String, disabled: Bool) async throws -> Bool { try await inner.setDisabled(name: name, disabled: disabled) }
    func deleteAccount(name: String) async throws -> Bool { try await inner.deleteAccount(name: name) }
    func enqueueOfflineMessage(to recipient: String, from sender: String, text: String, sentAt: Date, quota: Int)
        async throws -> Int64?
    {
        try await inner.enqueueOfflineMessage(to: recipient, from: sender, text: text, sentAt: sentAt, quota: quota)
    }
    func pendingMessageTotal() async throws -> Int { try await inner.pendingMessageTotal() }
    func recordFailedLogin(name: String, now: Date, threshold: Int, lockDuration: TimeInterval) async throws -> FailedLoginOutcome {
        try await inner.recordFailedLogin(name: name, now: now, threshold: threshold, lockDuration: lockDuration)
    }
    func claimLoginAttempt(name: String, now: Date, threshold: Int, lockDuration: TimeInterval) async throws -> LoginAttemptClaim {
        try await inner.claimLoginAttempt(name: name, now: now, threshold: threshold, lockDuration: lockDuration)
    }
    func resetFailedLogins(name: String) async throws -> Bool { try await inner.resetFailedLogins(name: name) }
    func unlock(name: String) async throws -> Bool { try await inner.unlock(name: name) }
    func block(blocker: String, blocked: String) async throws -> Bool { try await inner.block(blocker: blocker, blocked: blocked) }
    func unblock(blocker: String, blocked: String) async throws -> Bool { try await inner.unblock(blocker: blocker, blocked: blocked) }
    func blockedUsers(by blocker: String) async throws -> Set<String> { try await inner.blockedUsers(by: blocker) }
    func usersBlocking(_ blocked: String) async throws -> Set<String> { try await inner.usersBlocking(blocked) }
    func isBlocked(blocker: String, blocked: String) async throws -> Bool { try await inner.isBlocked(blocker: blocker, blocked: blocked) }
    func enqueueOfflineMessage(to recipient: String, from sender: String, text: String, sentAt: Date) async throws -> Int64 {
        try await inner.enqueueOfflineMessage(to: recipient, from: sender, text: text, sentAt: sentAt)
    }
    func pendingMessages(for recipient: String, after afterID: Int64, limit: Int) async throws -> [StoredMessage] {
        try await inner.pendingMessages(for: recipient, after: afterID, limit: limit)
    }
    func pendingMessageCount(for recipient: String) async throws -> Int { try await inner.pendingMessageCount(for: recipient) }
    func acknowledge(delivery id: Int64, for recipient: String) async throws -> Bool {
        try await inner.acknowledge(delivery: id, for: recipient)
    }
    func recordLogin(name: String, at time: Date) async throws { try await inner.recordLogin(name: name, at: time) }
    func recordLogout(name: String, at time: Date) async throws -> Bool { try await inner.recordLogout(name: name, at: time) }
    func usersActive(since: Date) async throws -> Set<String> { try await inner.usersActive(since: since) }
    func closeOpenLogins(at time: Date) async throws -> Int { try await inner.closeOpenLogins(at: time) }
    func close() async throws { try await inner.close() }
}
