import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyStore
import ParleyTestSupport
import Testing

@Suite("Lockout under concurrency, per-address back-off, refused hash costs: end to end over TLS")
struct LockoutTests {
    @Test("of 50 wrong logins for one name sent at once, 3 are checked; a right password sent alongside stays out")
    func concurrentWrongLoginsAreCountedExactly() async throws {
        try await withTestServer({
            $0.blockDuration = .seconds(120)
            $0.maxLoginsWaitingPerName = 64
            $0.addressBackoff.failures = 1_000  // this test is about the name lock alone
        }) { server in
            _ = try await server.loggedIn("victim", "right-password").close()
            let wrong = try await withThrowingTaskGroup(of: TestChatClient.self) { group in
                for _ in 0..<50 { group.addTask { try await server.client() } }
                return try await group.reduce(into: [TestChatClient]()) { $0.append($1) }
            }
            let right = try await server.client()
            // Every wrong login is on the wire before any reply is read.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in wrong {
                    group.addTask { try await client.send(.login(username: "victim", password: "wrong-password"), id: 1) }
                }
                try await group.waitForAll()
            }
            // Sent while the others are still queued for the name's turn.
            let firstReply = await wrong[0].next(timeout: 30) { if case .reply = $0 { true } else { false } }
            #expect(firstReply != nil)
            let rightReply = try await right.login("victim", "right-password", timeout: 60)
            var codes: [ErrorCode?] = []
            if case .reply(let reply)? = firstReply { codes.append(reply.code) }
            for client in wrong.dropFirst() {
                let message = await client.next(timeout: 60) { if case .reply = $0 { true } else { false } }
                guard case .reply(let reply)? = message else {
                    Issue.record("a wrong login got no reply")
                    continue
                }
                codes.append(reply.code)
            }
            #expect(codes.count == 50)
            #expect(codes.count(where: { $0 == .wrongPassword }) == 2)
            #expect(codes.count(where: { $0 == .accountLockedNow }) == 1)
            #expect(codes.count(where: { $0 == .accountLocked }) == 47)
            #expect(rightReply.code == .accountLocked, "the right password must not log in while the name is locked")
            #expect(server.server.loginsWaiting == 0)

            let store = try await SQLiteStore.open(path: server.databasePath)
            let victim = try #require(try await store.account(named: "victim"))
            try await store.close()
            #expect(victim.isLocked(at: Date()))
        }
    }

    @Test("a connection closed while its login waits for the name's turn leaves nothing queued and is not counted")
    func closingWhileWaitingDoesNotLeakOrCount() async throws {
        // Production cost: each check takes long enough (~0.4 s or more) to watch the others wait.
        try await withTestServer({ $0.hashParameters = .production }) { server in
            _ = try await server.loggedIn("wanda", "right-password").close()
            let first = try await server.client()
            let waiting = [try await server.client(), try await server.client()]
            try await first.send(.login(username: "wanda", password: "wrong-password"), id: 1)
            #expect(try await waitUntil(timeout: 30) { server.server.namesBeingChecked == 1 }, "the first holds the turn")
            for client in waiting { try await client.send(.login(username: "wanda", password: "wrong-password"), id: 1) }
            #expect(try await waitUntil(timeout: 30) { server.server.loginsWaiting == 2 }, "both wait behind the first check")
            for client in waiting { await client.abort() }
            #expect(try await waitUntil(timeout: 30) { server.server.loginsWaiting == 0 }, "the waits end with their connections")
            let reply = await first.next(timeout: 60) { if case .reply = $0 { true } else { false } }
            guard case .reply(let r)? = reply else {
                Issue.record("the first login got no reply")
                return
            }
            #expect(r.code == .wrongPassword)

            let store = try await SQLiteStore.open(path: server.databasePath)
            let wanda = try #require(try await store.account(named: "wanda"))
            try await store.close()
            #expect(wanda.failedAttempts == 1, "only the check that ran counts")
            #expect(try await first.login("wanda", "right-password", timeout: 60).isOK)
        }
    }

    @Test("after K failures one address is refused without hashing; another address still logs in")
    func perAddressBackoffSparesOtherAddresses() async throws {
        try await withTestServer({
            $0.addressBackoff.failures = 3
            $0.addressBackoff.firstDelay = .seconds(120)
        }) { server in
            for name in ["n1", "n2", "n3", "n4"] { _ = try await server.loggedIn(name).close() }
            let attacker = try await server.client(from: "127.0.0.2")
            // One wrong password on each of three names: no name is locked, but the address trips.
            for name in ["n1", "n2", "n3"] {
                #expect(try await attacker.login(name, "wrong-password").code == .wrongPassword)
            }
            let refused = try await attacker.login("n4", "password-n4")
            #expect(refused.code == .rateLimited, "even a right password is not checked from this address")
            #expect(refused.errorMessage?.contains("try again in") == true)
            let fresh = try await server.client(from: "127.0.0.2")
            #expect(try await fresh.login("n1", "password-n1").code == .rateLimited, "the address, not the connection")

            // Loopback is not exempt, but the back-off is per address: 127.0.0.1 is another host here.
            let other = try await server.client(from: "127.0.0.1")
            #expect(try await other.login("n4", "password-n4").isOK)
            let another = try await server.client()
            #expect(try await another.login("n1", "password-n1").isOK, "the name itself was never locked")
        }
    }

    @Test("parley-server --address-failure-limit is documented in --help and refuses 0")
    func addressFailureLimitFlag() async throws {
        let help = try await ServerBinary.run(["serve", "--help"])
        #expect(help.status == 0 && help.output.contains("--address-failure-limit"))
        let zero = try await ServerBinary.run(["--address-failure-limit", "0"])
        #expect(zero.status == 64)
        #expect(zero.output.contains("address-failure-limit must be 1-1000000, got \"0\" (command line --address-failure-limit)"))
    }

    @Test("a stored hash costing more than the server issues is refused with a clear error, not run")
    func storedCostAboveIssuedIsRefused() async throws {
        try await withTestServer { server in
            _ = try await server.loggedIn("ivan", "right-password").close()
            let store = try await SQLiteStore.open(path: server.databasePath)
            let salt = String(repeating: "A", count: 22), key = String(repeating: "B", count: 43)
            // ln=20, r=16: inside the global bounds, about 2 GiB per check.
            #expect(try await store.updatePasswordHash(name: "ivan", passwordHash: "$scrypt$ln=20,r=16,p=1$\(salt)$\(key)"))
            let c = try await server.client()
            let started = ContinuousClock.now
            let reply = try await c.login("ivan", "right-password", timeout: 30)
            #expect(reply.code == .internal)
            #expect(reply.errorMessage?.contains("cannot be checked") == true)
            #expect(ContinuousClock.now - started < .seconds(20))
            #expect(try await store.account(named: "ivan")?.failedAttempts == 0, "a refused hash is not a guess")
            try await store.close()
            #expect(try await c.login("judy", "password-judy").isOK, "the server carries on")
        }
    }
}
