import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyClient
import ParleyProtocol
import ParleyServer
import ParleyTLS
import ParleyTestSupport
import Testing

/// A plain TCP connection (no TLS) that records every byte until the server closes.
final class RawConnection: Sendable {
    let channel: Channel
    private let collector: Collector

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = NIOLockedValueBox<[UInt8]>([])
        let closed = NIOLockedValueBox(false)
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLockedValue { $0 += buffer.readableBytesView }
        }
        func channelInactive(context: ChannelHandlerContext) { closed.withLockedValue { $0 = true } }
        func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
    }

    private init(channel: Channel, collector: Collector) {
        self.channel = channel
        self.collector = collector
    }

    static func connect(port: Int, from source: String = "127.0.0.1") async throws -> RawConnection {
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .channelInitializer { $0.pipeline.addHandler(collector) }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, collector: collector)
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Everything received once the server closed (nil if it did not within `timeout` seconds).
    func receivedUntilClose(timeout: Double = 5) async -> String? {
        let closed = await eventually(timeout) { self.collector.closed.withLockedValue { $0 } }
        guard closed else { return nil }
        return String(decoding: collector.bytes.withLockedValue { $0 }, as: UTF8.self)
    }
}

private func refusalLine(_ code: ErrorCode) -> String {
    "{\"type\":\"error\",\"code\":\"\(code.rawValue)\",\"message\":\"\(code.defaultMessage)\"}\n"
}

@Suite("Limits, end to end over TLS")
struct LimitsEndToEndTests {
    @Test("connections per address: the one past the limit gets a plaintext refusal and no TLS; other addresses are not affected")
    func connectionsPerAddress() async throws {
        try await withTestServer({ $0.limits.maxConnectionsPerAddress = 3 }) { server in
            var held: [TestChatClient] = []
            for _ in 0..<3 { held.append(try await server.client()) }
            let raw = try await RawConnection.connect(port: server.port)
            #expect(await raw.receivedUntilClose() == refusalLine(.tooManyConnections), "refused at accept, before any TLS")

            // The terminal client's connection reports it in words.
            let tls = try TLSContext(role: .client(trustedCAPath: server.certs.caPath))
            do {
                _ = try await ServerConnection.connect(host: "127.0.0.1", port: server.port, tlsContext: tls, serverHostname: "localhost")
                Issue.record("a fourth connection was let in")
            } catch {
                #expect(error as? ClientError == .refused(.tooManyConnections))
                #expect((error as? ClientError)?.description.contains("Too many connections from your address") == true)
            }

            // 127.0.0.2 is another host: its budget is its own.
            let other = try await server.client(from: "127.0.0.2")
            #expect(try await other.login("bob", "password-bob").isOK)

            // Closing one frees a slot (the count is released when the channel closes).
            await held[0].close()
            #expect(await eventually { server.server.connectionsCounted(from: "127.0.0.1") == 2 })
            let freed = try await server.client()
            #expect(try await freed.login("carol", "password-carol").isOK)
        }
    }

    @Test("new connections per minute: past the budget an address is refused at accept; another address still connects")
    func newConnectionsPerMinute() async throws {
        try await withTestServer({ $0.limits.maxNewConnectionsPerMinute = 3 }) { server in
            for _ in 0..<3 {
                let client = try await server.client(from: "127.0.0.2")
                await client.close()
            }
            let raw = try await RawConnection.connect(port: server.port, from: "127.0.0.2")
            #expect(await raw.receivedUntilClose() == refusalLine(.tooManyNewConnections))
            let other = try await server.client(from: "127.0.0.3")
            #expect(try await other.login("carol", "password-carol").isOK)
        }
    }

    @Test("the login deadline closes a connection that never logs in; a logged-in one stays")
    func loginDeadline() async throws {
        // The deadline runs from the accept, handshake included: 3 s leave room on a loaded machine.
        try await withTestServer({ $0.loginTimeout = .seconds(3) }) { server in
            let online = try await server.loggedIn("alice")
            let started = ContinuousClock.now
            let silent = try await server.client()
            #expect(await silent.waitForClose(timeout: 15))
            #expect(ContinuousClock.now - started >= .milliseconds(2900), "not before the deadline")
            #expect(try await online.request(.whoelse).isOK, "the deadline only applies until login")
            #expect(!online.isClosed)
        }
    }

    @Test("commands past the burst get rate_limited; other users see no effect")
    func commandRate() async throws {
        try await withTestServer({
            // Slow enough that no token comes back during the test, however loaded the machine.
            $0.limits.commandsPerSecond = 0.0001
            $0.limits.commandBurst = 6
            $0.limits.floodRefusals = 1000
        }) { server in
            let alice = try await server.loggedIn("alice")  // the login took one token
            let bob = try await server.loggedIn("bob")
            try await alice.sendPipelined((Int64(100)..<110).map { (id: $0, request: Request.active) })
            var codes: [ErrorCode?] = []
            for id in Int64(100)..<110 {
                let reply = await alice.next { if case .reply(let r) = $0 { r.id == id } else { false } }
                guard case .reply(let r)? = reply else { Issue.record("no reply to \(id)"); return }
                codes.append(r.code)
            }
            #expect(codes.prefix(5).allSatisfy { $0 == nil })
            #expect(codes.dropFirst(5).allSatisfy { $0 == .rateLimited })
            // Bob's bucket is his own: his burst goes through at once.
            for n in 0..<5 { #expect(try await bob.request(.message(to: "alice", text: "hi \(n)")).isOK) }
            #expect(await alice.nextMessage()?.text == "hi 0")
        }
    }

    @Test("a client that keeps flooding is logged out with reason flooding; others are told it left")
    func flooding() async throws {
        try await withTestServer({
            $0.limits.commandsPerSecond = 0.0001
            $0.limits.commandBurst = 2
            $0.limits.floodRefusals = 5
        }) { server in
            let watcher = try await server.loggedIn("watcher")
            let flood = try await server.loggedIn("flood")
            try await flood.sendPipelined((Int64(1)...40).map { (id: $0, request: Request.broadcast(text: "spam")) })
            #expect(await flood.next { $0 == .loggedOut(reason: .flooding) } != nil)
            #expect(await flood.waitForClose())
            #expect(await watcher.nextPresence(of: "flood", online: false))
            let spam = watcher.received.filter { if case .broadcast = $0 { true } else { false } }
            #expect(spam.count == 1, "only the one command the bucket allowed went out: \(spam.count)")
        }
    }

    @Test("offline messages past the recipient's quota are refused with recipient_queue_full; the queued ones all arrive")
    func offlineQuota() async throws {
        try await withTestServer({ $0.limits.maxQueuedPerRecipient = 3 }) { server in
            let bob = try await server.loggedIn("bob")
            #expect(try await bob.request(.logout).isOK)
            let alice = try await server.loggedIn("alice")
            for n in 1...3 { #expect(try await alice.request(.message(to: "bob", text: "m\(n)")).isOK) }
            let refused = try await alice.request(.message(to: "bob", text: "m4"))
            #expect(refused.code == .recipientQueueFull)
            #expect(refused.errorMessage == ErrorCode.recipientQueueFull.defaultMessage)

            let back = try await server.loggedIn("bob")
            var texts: [String] = []
            for _ in 0..<3 {
                guard let message = await back.nextMessage(), let delivery = message.delivery else { break }
                texts.append(message.text)
                try await back.send(.ack(delivery: delivery))
            }
            #expect(texts == ["m1", "m2", "m3"])
            #expect(await back.nextMessage(timeout: 0.5) == nil, "m4 was refused, not stored")
        }
    }

    @Test("registrations per address per hour: past the budget a new name is refused; existing accounts and other addresses are not")
    func registrationsPerHour() async throws {
        try await withTestServer({ $0.limits.maxRegistrationsPerAddressPerHour = 2 }) { server in
            for name in ["u1", "u2"] {
                let client = try await server.client(from: "127.0.0.2")
                #expect(try await client.login(name, "password-\(name)").isOK)
                await client.close()
            }
            let third = try await server.client(from: "127.0.0.2")
            let refused = try await third.login("u3", "password-u3")
            #expect(refused.code == .tooManyRegistrations)
            #expect(try await third.login("u1", "password-u1").isOK, "logging in to an existing account is not a registration")
            let elsewhere = try await server.client(from: "127.0.0.3")
            #expect(try await elsewhere.login("u3", "password-u3").isOK)
        }
    }
}
