import Foundation
import ParleyProtocol
import ParleyStore
import ParleyTestSupport
import Testing

@Suite("passwd: the old password is checked like a login, end to end over TLS")
struct PasswordChangeTests {
    @Test func afterAChangeTheNewPasswordLogsInAndTheOldOneDoesNot() async throws {
        try await withTestServer { server in
            let alice = try await server.loggedIn("alice", "first-password")
            let store = try await SQLiteStore.open(path: server.databasePath)
            let before = try #require(try await store.account(named: "alice")).passwordHash
            #expect(try await alice.request(.passwd(old: "first-password", new: "second-password")).isOK)
            let after = try #require(try await store.account(named: "alice")).passwordHash
            try await store.close()
            #expect(before != after)
            #expect(!after.contains("second-password"), "stored as a hash")
            // The session goes on.
            #expect(try await alice.request(.whoelse).isOK)
            _ = try await alice.request(.logout)

            let old = try await server.client()
            #expect(try await old.login("alice", "first-password").code == .wrongPassword)
            let new = try await server.client()
            #expect(try await new.login("alice", "second-password").isOK)
        }
    }

    @Test func threeWrongOldPasswordsLockTheNameLikeLoginsAndEndTheSession() async throws {
        try await withTestServer({
            $0.blockDuration = .seconds(120)
            $0.addressBackoff.failures = 1_000  // about the name lock alone
        }) { server in
            let alice = try await server.loggedIn("alice")
            // One wrong login elsewhere and two wrong old passwords: the same count of three.
            let elsewhere = try await server.client()
            #expect(try await elsewhere.login("alice", "guess-number-1").code == .wrongPassword)
            #expect(try await alice.request(.passwd(old: "guess-number-2", new: "taken-over-pw")).code == .wrongPassword)
            #expect(try await alice.request(.whoelse).isOK, "a wrong old password alone does not end the session")
            let third = try await alice.request(.passwd(old: "guess-number-3", new: "taken-over-pw"))
            #expect(third.code == .accountLockedNow)
            #expect(await alice.next { $0 == .loggedOut(reason: .accountLocked) } != nil)
            #expect(await alice.waitForClose())
            // Locked for everyone, the right password included; the password was not changed.
            let later = try await server.client()
            #expect(try await later.login("alice", "password-alice").code == .accountLocked)
            let store = try await SQLiteStore.open(path: server.databasePath)
            let account = try #require(try await store.account(named: "alice"))
            #expect(account.isLocked(at: Date()))
            _ = try await store.unlock(name: "alice")
            try await store.close()
            let unlocked = try await server.client()
            #expect(try await unlocked.login("alice", "password-alice").isOK)
        }
    }

    @Test func aBadNewPasswordIsRefusedBeforeAnyCheckAndPasswdNeedsALogin() async throws {
        try await withTestServer({ $0.blockDuration = .seconds(120) }) { server in
            let anonymous = try await server.client()
            #expect(try await anonymous.request(.passwd(old: "password-x", new: "password-y")).code == .notLoggedIn)
            let alice = try await server.loggedIn("alice")
            for _ in 0..<4 {
                let short = try await alice.request(.passwd(old: "wrong-but-unchecked", new: "short"))
                #expect(short.code == .invalidPasswordFormat)
                #expect(short.errorMessage == "Error. The new password must be 8 to 1024 bytes")
            }
            let tooLong = String(repeating: "x", count: 1025)
            #expect(try await alice.request(.passwd(old: "password-alice", new: tooLong)).code == .invalidPasswordFormat)
            #expect(try await alice.request(.passwd(old: "short", new: "long-enough-pw")).code == .invalidPasswordFormat)
            // None of them was a counted guess.
            let store = try await SQLiteStore.open(path: server.databasePath)
            #expect(try #require(try await store.account(named: "alice")).failedAttempts == 0)
            try await store.close()
            #expect(try await alice.request(.passwd(old: "password-alice", new: "long-enough-pw")).isOK)
        }
    }

    @Test func requestsPrintWithoutTheirPasswords() throws {
        let text = "\(Request.passwd(old: "old-secret-1", new: "new-secret-2"))"
        #expect(!text.contains("old-secret-1") && !text.contains("new-secret-2"))
        #expect(!"\(Request.login(username: "alice", password: "login-secret"))".contains("login-secret"))
        #expect("\(Request.message(to: "bob", text: "hi"))".contains("hi"))
        #expect(try Request.decode(bytes: Array(#"{"type":"passwd","old":"a-password","new":"b-password","id":4}"#.utf8))
            == (4, .passwd(old: "a-password", new: "b-password")))
    }
}
