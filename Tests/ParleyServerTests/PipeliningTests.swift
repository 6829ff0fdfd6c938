import ParleyProtocol
import ParleyTestSupport
import Testing

@Suite("Pipelined requests, end to end over TLS")
struct PipeliningTests {
    @Test("requests written in one go are answered in the order sent, whether they need the store or not")
    func repliesComeBackInOrder() async throws {
        try await withTestServer { server in
            let bob = try await server.loggedIn("bob")
            let alice = try await server.loggedIn("alice")
            // Answered after bob is out of the hub: alice's messages to him must be stored.
            #expect(try await bob.request(.logout).isOK)
            // More than the server queues (32) before it stops reading: read suppression and
            // resumption are on the path too.
            let count = 120
            let requests: [(id: Int64, request: Request)] = (1...count).map { i in
                let request: Request =
                    switch i % 4 {
                    case 0: .message(to: "bob", text: "m\(i)")  // store: bob is offline
                    case 1: .whoelse  // answered from the hub at once
                    case 2: .whoelsesince(seconds: 60)  // store
                    default: .active
                    }
                return (Int64(1000 + i), request)
            }
            try await alice.sendPipelined(requests)
            let lastID = Int64(1000 + count)
            let last = await alice.next(timeout: 60) { if case .reply(let r) = $0 { r.id == lastID } else { false } }
            #expect(last != nil, "no reply to the last request")
            let replies = alice.received.compactMap { message -> Reply? in
                guard case .reply(let reply) = message, let id = reply.id, id > 1000 else { return nil }
                return reply
            }
            #expect(replies.map(\.id) == requests.map(\.id), "replies out of order or missing")
            let refused = replies.filter { !$0.isOK }
            #expect(refused.isEmpty, "\(refused)")
            #expect(replies.first?.users == [], "whoelse: nobody else online")
            #expect(replies.dropFirst().first?.users == ["bob"], "whoelsesince: bob left within the minute")

            // The stored ones reach bob in the order they were sent.
            let bobAgain = try await server.loggedIn("bob")
            var texts: [String] = []
            for _ in 0..<(count / 4) {
                guard let message = await bobAgain.nextMessage(timeout: 10) else { break }
                texts.append(message.text)
            }
            #expect(texts == stride(from: 4, through: count, by: 4).map { "m\($0)" })
        }
    }
}
