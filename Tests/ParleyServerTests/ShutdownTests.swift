import ParleyProtocol
import ParleyTestSupport
import Testing

@Suite("Shutting down with work in flight")
struct ShutdownTests {
    @Test("a restart during logins and stores in flight ends every connection and keeps every acknowledged message")
    func restartWithWorkInFlight() async throws {
        try await withTestServer { server in
            try await server.loggedIn("bob").close()
            let alice = try await server.loggedIn("alice")
            // Logins (hashing) and offline stores under way when the shutdown starts.
            var others: [TestChatClient] = []
            for i in 0..<10 {
                let client = try await server.client()
                try await client.send(.login(username: "late\(i)", password: "password-\(i)"), id: 1)
                others.append(client)
            }
            let count = 40
            for i in 1...count { try await alice.send(.message(to: "bob", text: "m\(i)"), id: 1000 + Int64(i)) }
            let started = ContinuousClock.now
            try await server.restart()
            #expect(ContinuousClock.now - started < .seconds(10), "shutdown took too long")
            #expect(await alice.waitForClose())
            for client in others { #expect(await client.waitForClose()) }
            // Every message the server said ok to is waiting for bob, once; nothing else is.
            let acknowledged = Set(alice.received.compactMap { message -> String? in
                guard case .reply(let reply) = message, reply.isOK, let id = reply.id, id > 1000 else { return nil }
                return "m\(id - 1000)"
            })
            let bob = try await server.loggedIn("bob")
            var delivered: [String] = []
            while let message = await bob.nextMessage(timeout: 1) { delivered.append(message.text) }
            #expect(Set(delivered).isSuperset(of: acknowledged), "an acknowledged message was lost")
            #expect(delivered.count == Set(delivered).count, "a message was delivered twice")
            #expect(delivered == delivered.sorted { Int($0.dropFirst())! < Int($1.dropFirst())! })
        }
    }
}

extension ShutdownTests {
    @Test("every logged-in user, on every event loop, is told the server is shutting down before the connection closes")
    func usersAreToldOfTheShutdown() async throws {
        try await withTestServer { server in
            // Two event loops in the test server: enough users that both have some.
            var users: [TestChatClient] = []
            for i in 0..<6 { users.append(try await server.loggedIn("user\(i)")) }
            let waiting = try await server.client()
            try await server.restart()
            for user in users {
                #expect(await user.next(timeout: 10) { $0 == .loggedOut(reason: .serverShutdown) } != nil)
                #expect(await user.waitForClose())
            }
            #expect(await waiting.waitForClose(), "a connection that never logged in is closed too")
            #expect(!waiting.received.contains(.loggedOut(reason: .serverShutdown)), "only sessions are told")
        }
    }
}

@Suite("Closed connections free their state")
struct ConnectionLifetimeTests {
    @Test("handlers of closed connections are freed: logged in or not, closed by either side")
    func closedConnectionsAreFreed() async throws {
        try await withTestServer { server in
            for round in 0..<3 {
                var clients: [TestChatClient] = []
                for i in 0..<10 { clients.append(try await server.loggedIn("user\(round)x\(i)")) }
                for _ in 0..<10 { clients.append(try await server.client()) }
                #expect(server.server.connectionHandlers >= 20)
                for (i, client) in clients.enumerated() {
                    if i % 3 == 0 { await client.abort() } else if i % 3 == 1 { await client.close() } else {
                        _ = try? await client.request(.logout)
                        await client.close()
                    }
                }
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while server.server.connectionHandlers > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(server.server.connectionHandlers == 0, "connection handlers outlive their connections")
        }
    }
}
