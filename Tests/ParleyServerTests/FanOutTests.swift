import NIOPosix
import ParleyProtocol
import ParleyTestSupport
import Testing

@Suite("Fan-out to more clients than one flush step, end to end over TLS")
struct FanOutTests {
    /// More clients on one event loop than `LoopShard.flushStep` (64): passes are flushed in steps
    /// with reads in between, and also with a flush delay. Nothing may be lost, repeated or reordered.
    /// (Kept small: it runs beside timing-sensitive tests.)
    @Test("broadcasts from several senders reach 80 clients complete and in each sender's order", arguments: [0, 15])
    func manyRecipients(flushDelayMs: Int) async throws {
        try await withTestServer({
            $0.eventLoopThreads = 1
            $0.minFlushInterval = .milliseconds(Int64(flushDelayMs))
        }) { server in
            // Their own client loop: 80 busy clients must not slow other tests' clients (timeouts).
            let clientLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            var clients: [TestChatClient] = []
            // The clients close before their loop stops (NIO complains about channels left on a dead loop).
            defer { Task { [clients] in
                for client in clients { await client.close() }
                try? await clientLoop.shutdownGracefully()
            } }
            clients = try await withThrowingTaskGroup(of: TestChatClient.self) { group in
                for i in 0..<80 {
                    group.addTask {
                        let client = try await server.client(group: clientLoop)
                        let reply = try await client.request(.login(username: "fan\(i)", password: "password-\(i)"), timeout: 60)
                        #expect(reply.isOK)
                        return client
                    }
                }
                var all: [TestChatClient] = []
                for try await client in group { all.append(client) }
                return all
            }
            let senders = Array(clients.prefix(2))
            let perSender = 30
            // Sent without waiting for replies, so broadcasts arrive while passes are under way.
            for round in 0..<perSender {
                for (s, sender) in senders.enumerated() { try await sender.send(.broadcast(text: "s\(s) #\(round)")) }
            }
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        let own = senders.indices.contains(index) ? index : -1
                        var next = [Int](repeating: 0, count: senders.count)
                        for _ in 0..<(perSender * (senders.count - (own >= 0 ? 1 : 0))) {
                            guard let got = await client.nextBroadcast(timeout: 30) else { return false }
                            let parts = got.text.split(separator: " ")
                            guard parts.count == 2, let s = Int(parts[0].dropFirst()), s != own,
                                let round = Int(parts[1].dropFirst()), round == next[s]
                            else { return false }
                            next[s] += 1
                        }
                        // Nothing extra afterwards.
                        return await client.nextBroadcast(timeout: 0.3) == nil
                    }
                }
                var results: [Bool] = []
                for try await ok in group { results.append(ok) }
                return results
            }
            #expect(outcomes.count == clients.count)
            #expect(outcomes.allSatisfy { $0 }, "\(outcomes.filter { !$0 }.count) clients saw a gap, a repeat or a reorder")
        }
    }
}
