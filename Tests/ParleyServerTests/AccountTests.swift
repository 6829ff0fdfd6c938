import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyStore
import ParleyTestSupport
import Testing

@Suite("Accounts and login, end to end over TLS")
struct AccountTests {
    @Test("a new name registers; the stored hash is not the password; equal passwords hash differently")
    func registration() async throws {
        try await withTestServer { server in
            let alice = try await server.client()
            let reply = try await alice.login("Alice", "same-password")
            #expect(reply.outcome == .ok(.login(username: "Alice", created: true)))
            let bob = try await server.client()
            #expect(try await bob.login("bob", "same-password").outcome == .ok(.login(username: "bob", created: true)))
            let again = try await server.client()
            await alice.close()
            try await Task.sleep(for: .milliseconds(200))
            // Case-insensitive names: ALICE is alice, no new account.
            #expect(try await again.login("ALICE", "same-password").outcome == .ok(.login(username: "Alice", created: false)))

            let store = try await SQLiteStore.open(path: server.databasePath)
            let a = try #require(try await store.account(named: "alice"))
            let b = try #require(try await store.account(named: "bob"))
            try await store.close()
            #expect(!a.passwordHash.contains("same-password"))
            #expect(a.passwordHash.hasPrefix("$scrypt$"))
            #expect(a.passwordHash != b.passwordHash)
            #expect(try PasswordHasher(parameters: .testing).verify(password: "same-password", against: a.passwordHash))
        }
    }

    @Test("three wrong passwords lock the name, with three distinct messages; the lock expires")
    func lockout() async throws {
        // 3 s, and waiting for the lock to lift rather than sleeping: on a loaded machine the four
        // attempts after the lock must still fall inside it.
        try await withTestServer({ $0.blockDuration = .seconds(3) }) { server in
            _ = try await server.loggedIn("carol", "right-password").close()
            try await Task.sleep(for: .milliseconds(100))
            let c = try await server.client()
            #expect(try await c.login("carol", "wrong-password").code == .wrongPassword)
            #expect(try await c.login("carol", "wrong-password").code == .wrongPassword)
            let third = try await c.login("carol", "wrong-password")
            #expect(third.code == .accountLockedNow)
            #expect(third.errorMessage == "Invalid Password. Your account has been blocked. Please try again later")
            let lockedAt = ContinuousClock.now
            let locked = try await c.login("carol", "right-password")
            #expect(locked.code == .accountLocked)
            #expect(locked.errorMessage == "Your account is blocked due to multiple login failures. Please try again later")
            var again = locked
            while again.code == .accountLocked, ContinuousClock.now - lockedAt < .seconds(20) {
                try await Task.sleep(for: .milliseconds(200))
                again = try await c.login("carol", "right-password")
            }
            #expect(again.isOK, "the lock did not lift")
            #expect(ContinuousClock.now - lockedAt > .seconds(1), "the lock lifted too early")
        }
    }

    @Test("a lock survives a server restart")
    func lockSurvivesRestart() async throws {
        try await withTestServer({ $0.blockDuration = .seconds(30) }) { server in
            let c = try await server.client()
            _ = try await c.login("dave", "right-password")
            await c.close()
            let d = try await server.client()
            for _ in 0..<3 { _ = try await d.login("dave", "wrong-password") }
            try await server.restart()
            let e = try await server.client()
            #expect(try await e.login("dave", "right-password").code == .accountLocked)
        }
    }

    @Test("a second login of a user who is online is refused")
    func duplicateLogin() async throws {
        try await withTestServer { server in
            let first = try await server.loggedIn("erin")
            let second = try await server.client()
            let reply = try await second.login("erin", "password-erin")
            #expect(reply.code == .alreadyOnline)
            #expect(try await first.request(.whoelse).isOK, "the first session is untouched")
        }
    }

    @Test("bad names, bad passwords, commands before login, a second login, another protocol version")
    func loginErrors() async throws {
        try await withTestServer { server in
            let c = try await server.client()
            #expect(try await c.request(.whoelse).code == .notLoggedIn)
            #expect(try await c.login("no spaces", "password123").code == .invalidUsername)
            #expect(try await c.login(".dot", "password123").code == .invalidUsername)
            #expect(try await c.login(String(repeating: "a", count: 33), "password123").code == .invalidUsername)
            #expect(try await c.login("frank", "short").code == .invalidPasswordFormat)
            #expect(try await c.request(.login(username: "frank", password: "password123", version: 2)).code == .unsupportedVersion)
            #expect(try await c.login("frank", "password123").isOK)
            #expect(try await c.login("frank", "password123").code == .alreadyLoggedIn)
        }
    }

    @Test("with registration closed, unknown names are refused and known ones still log in")
    func registrationClosed() async throws {
        try await withTestServer { server in
            _ = try await server.loggedIn("grace").close()
            try await server.restart { $0.registrationOpen = false }
            let c = try await server.client()
            #expect(try await c.login("heidi", "password123").code == .registrationClosed)
            #expect(try await c.login("grace", "password-grace").isOK)
        }
    }

    @Test("50 clients logging in at once all get in")
    func fiftyConcurrentLogins() async throws {
        try await withTestServer { server in
            let replies = try await withThrowingTaskGroup(of: (TestChatClient, Reply).self) { group in
                for i in 0..<50 {
                    group.addTask {
                        let client = try await server.client()
                        return (client, try await client.login("user\(i)", "password-\(i)", timeout: 60))
                    }
                }
                var all: [(TestChatClient, Reply)] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(replies.count == 50)
            #expect(replies.allSatisfy { $0.1.isOK })
            let users = try #require(try await replies[0].0.request(.whoelse).users)
            #expect(users.count == 49)
        }
    }
}

extension TestChatClient {
    @discardableResult
    func login(_ username: String, _ password: String, timeout: Double) async throws -> Reply {
        try await request(.login(username: username, password: password), timeout: timeout)
    }
}

