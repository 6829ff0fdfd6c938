import Foundation
import ParleyProtocol
import ParleyServer
import ParleyTestSupport
import Prometheus
import Testing

/// One HTTP request to the metrics listener; the whole response once the server closed.
private func http(_ port: Int, _ request: String) async throws -> String {
    let connection = try await RawConnection.connect(port: port)
    try await connection.send(request)
    return await connection.receivedUntilClose() ?? ""
}

private func scrape(_ port: Int) async throws -> String {
    try await http(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// The value of the sample `series` (name with labels, as exported), if present.
private func sample(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

@Suite("Prometheus metrics over HTTP, scraped during traffic")
struct MetricsEndToEndTests {
    @Test("gauges and counters follow what the clients did")
    func countsFollowTraffic() async throws {
        // A registry of this server's own: tests never bootstrap the process-wide MetricsSystem.
        try await withTestServer({ $0.metricsListen = MetricsAddress(host: "127.0.0.1", port: 0) }) { server in
            let port = try #require(server.server.metricsPort)
            let before = try await scrape(port)
            #expect(before.hasPrefix("HTTP/1.1 200 OK"))
            #expect(before.contains("Content-Type: text/plain; version=0.0.4"))

            let alice = try await server.loggedIn("alice")
            let bob = try await server.loggedIn("bob")
            let carol = try await server.loggedIn("carol")
            let wrong = try await server.client()
            #expect(try await wrong.login("alice", "not-the-password").code == .wrongPassword)
            for n in 1...5 { #expect(try await alice.request(.message(to: "bob", text: "m\(n)")).isOK) }
            for n in 1...2 { #expect(try await bob.request(.broadcast(text: "b\(n)")).isOK) }
            for n in 1...5 { #expect(await bob.nextMessage()?.text == "m\(n)") }
            #expect(await carol.nextBroadcast()?.text == "b1")
            #expect(await carol.nextBroadcast()?.text == "b2")
            #expect(await alice.nextBroadcast()?.text == "b1")
            #expect(await alice.nextBroadcast()?.text == "b2")

            // Deliveries are added once per flush pass: wait for the pass that carried the last.
            var text = ""
            for _ in 0..<100 {
                text = try await scrape(port)
                if sample(text, "parley_deliveries_total") == 9 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(sample(text, "parley_users_logged_in") == 3)
            #expect(sample(text, "parley_connections_open") == 4, "three users and the failed login")
            #expect(sample(text, "parley_messages_total") == 5)
            #expect(sample(text, "parley_broadcasts_total") == 2)
            #expect(sample(text, "parley_deliveries_total") == 9, "5 messages + 2 broadcasts to 2 others each")
            #expect(sample(text, #"parley_logins_total{result="ok"}"#) == 3)
            #expect(sample(text, #"parley_logins_total{result="failed"}"#) == 1)
            #expect(sample(text, "parley_hasher_queue_depth") == 0)
            #expect((sample(text, "parley_flush_pass_sessions_count") ?? 0) > 0)

            // Offline: two stored for dave, one acked.
            let dave = try await server.loggedIn("dave")
            #expect(try await dave.request(.logout).isOK)
            #expect(try await alice.request(.message(to: "dave", text: "o1")).isOK)
            #expect(try await alice.request(.message(to: "dave", text: "o2")).isOK)
            #expect(sample(try await scrape(port), "parley_offline_queue_depth") == 2)
            let back = try await server.loggedIn("dave")
            let stored = try #require(await back.nextMessage())
            try await back.send(.ack(delivery: try #require(stored.delivery)))
            var depth: Double?
            for _ in 0..<100 {
                depth = sample(try await scrape(port), "parley_offline_queue_depth")
                if depth == 1 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(depth == 1)

            await carol.close()
            var users: Double?
            for _ in 0..<100 {
                users = sample(try await scrape(port), "parley_users_logged_in")
                if users == 3 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(users == 3, "alice, bob and dave")
        }
    }

    @Test("only GET /metrics is served: other paths 404, other methods 405, a body 413")
    func onlyGetMetrics() async throws {
        try await withTestServer({ $0.metricsListen = MetricsAddress(host: "127.0.0.1", port: 0) }) { server in
            let port = try #require(server.server.metricsPort)
            #expect(try await http(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 404 Not Found"))
            #expect(try await http(port, "GET /metrics/x HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 404"))
            let post = try await http(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            #expect(post.hasPrefix("HTTP/1.1 405 Method Not Allowed"))
            let body = try await http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            #expect(body.hasPrefix("HTTP/1.1 413"))
            #expect(try await http(port, "not http at all\r\n\r\n").hasPrefix("HTTP/1.1 400"))
            #expect(try await scrape(port).hasPrefix("HTTP/1.1 200 OK"), "still serving")
        }
    }

    @Test("refused connections and rate-limited commands are counted")
    func refusalsCounted() async throws {
        try await withTestServer({
            $0.metricsListen = MetricsAddress(host: "127.0.0.1", port: 0)
            $0.limits.maxConnectionsPerAddress = 1
            $0.limits.commandBurst = 2
            $0.limits.commandsPerSecond = 0.0001
            $0.limits.floodRefusals = 100
        }) { server in
            let port = try #require(server.server.metricsPort)
            let alice = try await server.loggedIn("alice")
            let raw = try await RawConnection.connect(port: server.port)
            #expect(await raw.receivedUntilClose()?.contains("too_many_connections") == true)
            #expect(try await alice.request(.whoelse).isOK)
            #expect(try await alice.request(.whoelse).code == .rateLimited)
            #expect(try await alice.request(.whoelse).code == .rateLimited)
            // Plaintext on the TLS port (another address: 127.0.0.1 is at its limit) fails the handshake.
            let plain = try await RawConnection.connect(port: server.port, from: "127.0.0.2")
            try await plain.send("GET / HTTP/1.0\r\n\r\n")
            #expect(await plain.receivedUntilClose() != nil)
            var text = ""
            for _ in 0..<100 {
                text = try await scrape(port)
                if sample(text, #"parley_handshakes_failed_total{reason="not_tls"}"#) == 1 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(sample(text, #"parley_handshakes_failed_total{reason="not_tls"}"#) == 1)
            #expect(sample(text, #"parley_refused_total{limit="connections_per_address"}"#) == 1)
            #expect(sample(text, #"parley_refused_total{limit="commands"}"#) == 2)
        }
    }
}

@Suite("Prometheus metrics from the parley-server executable", .serialized)
struct MetricsBinaryTests {
    /// The metrics port the binary logged ("metrics listening address=127.0.0.1:PORT").
    private func metricsPort(_ server: ServerProcess) async throws -> Int {
        #expect(await server.waitForLog("metrics listening"))
        let line = try #require(server.log.split(separator: "\n").first { $0.contains("metrics listening") })
        let range = try #require(line.range(of: #"127\.0\.0\.1:\d+"#, options: .regularExpression))
        return try #require(Int(line[range].split(separator: ":")[1]))
    }

    private func loggedIn(_ server: ServerProcess, _ name: String) async throws -> TestChatClient {
        let client = try await server.client()
        #expect(try await client.login(name, "password-\(name)").isOK)
        return client
    }

    @Test("--metrics-listen serves /metrics; scraped during traffic, the figures match what the clients did")
    func scrapeDuringTraffic() async throws {
        let server = try await ServerProcess.start(["--metrics-listen", "127.0.0.1:0"])
        defer { server.stop() }
        let port = try await metricsPort(server)
        let first = try await scrape(port)
        #expect(first.hasPrefix("HTTP/1.1 200 OK"))
        #expect(sample(first, "parley_users_logged_in") == 0)

        let alice = try await loggedIn(server, "alice")
        let bob = try await loggedIn(server, "bob")
        let carol = try await loggedIn(server, "carol")
        let wrong = try await server.client()
        #expect(try await wrong.login("alice", "not-the-password").code == .wrongPassword)
        // Traffic goes on while the test scrapes: every scrape must parse and no counter may fall.
        var lastMessages = 0.0
        for n in 1...20 {
            #expect(try await alice.request(.message(to: "bob", text: "m\(n)")).isOK)
            if n.isMultiple(of: 5) {
                #expect(try await carol.request(.broadcast(text: "b\(n)")).isOK)
                let text = try await scrape(port)
                #expect(text.hasPrefix("HTTP/1.1 200 OK"))
                let messages = try #require(sample(text, "parley_messages_total"))
                #expect(messages >= lastMessages)
                lastMessages = messages
            }
        }
        for n in 1...20 { #expect(await bob.nextMessage()?.text == "m\(n)") }
        for n in stride(from: 5, through: 20, by: 5) {
            #expect(await alice.nextBroadcast()?.text == "b\(n)")
            #expect(await bob.nextBroadcast()?.text == "b\(n)")
        }
        // 20 messages + 4 broadcasts to 2 others; deliveries are added once per flush pass.
        var text = ""
        #expect(await eventuallyAsync { text = (try? await scrape(port)) ?? ""; return sample(text, "parley_deliveries_total") == 28 })
        #expect(sample(text, "parley_users_logged_in") == 3)
        #expect(sample(text, "parley_connections_open") == 4, "three users and the failed login's connection")
        #expect(sample(text, "parley_messages_total") == 20)
        #expect(sample(text, "parley_broadcasts_total") == 4)
        #expect(sample(text, #"parley_logins_total{result="ok"}"#) == 3)
        #expect(sample(text, #"parley_logins_total{result="failed"}"#) == 1)

        await carol.close()
        await wrong.close()
        #expect(await eventuallyAsync {
            let t = (try? await scrape(port)) ?? ""
            return sample(t, "parley_users_logged_in") == 2 && sample(t, "parley_connections_open") == 2
        })
    }
}

/// Retries the async `condition` every 20 ms for up to `seconds`.
private func eventuallyAsync(_ seconds: Double = 10, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}
