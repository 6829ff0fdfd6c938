import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

@Suite("Malformed and oversized frames, end to end over TLS")
struct FrameAbuseTests {
    @Test("a malformed frame gets bad_frame with the id when readable; the connection carries on")
    func malformedFrames() async throws {
        try await withTestServer { server in
            let alice = try await server.loggedIn("alice")
            try await alice.sendRaw(Array("{\"type\":\"message\",\"id\":77}\n".utf8))
            let missing = await alice.next { if case .reply(let r) = $0 { r.id == 77 } else { false } }
            guard case .reply(let reply)? = missing else { Issue.record("no reply"); return }
            #expect(reply.code == .badFrame)
            #expect(reply.errorMessage?.contains("to") == true)
            try await alice.sendRaw(Array("not json at all\n".utf8))
            #expect(await alice.next { if case .reply(let r) = $0 { r.code == .badFrame } else { false } } != nil)
            try await alice.sendRaw(Array("{\"type\":\"dance\",\"id\":5}\n".utf8))
            #expect(await alice.next { if case .reply(let r) = $0 { r.code == .unknownType && r.id == 5 } else { false } } != nil)
            #expect(try await alice.request(.whoelse).isOK)
        }
    }

    @Test("an oversized frame is refused before parsing and the connection carries on")
    func oversizedFrame() async throws {
        try await withTestServer({ $0.maxFrameBytes = 1024 }) { server in
            let alice = try await server.loggedIn("alice")
            let huge = "{\"type\":\"broadcast\",\"text\":\"" + String(repeating: "y", count: 200_000) + "\"}\n"
            try await alice.sendRaw(Array(huge.utf8))
            #expect(await alice.next { if case .reply(let r) = $0 { r.code == .frameTooLarge } else { false } } != nil)
            #expect(try await alice.request(.whoelse).isOK)
        }
    }

    @Test("ten bad frames in a row close that connection only; other clients notice nothing")
    func repeatedAbuseCloses() async throws {
        try await withTestServer { server in
            let good = try await server.loggedIn("good")
            let bad = try await server.loggedIn("bad")
            try await bad.sendRaw(Array(String(repeating: "{oops\n", count: 12).utf8))
            #expect(await bad.waitForClose())
            #expect(await bad.next { if case .error = $0 { true } else { false } } != nil)
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await good.request(.whoelse).users == [])
            #expect(try await good.request(.broadcast(text: "still fine")).isOK)
        }
    }

    @Test("a client that stops reading is disconnected once its backlog passes the limit; others keep flowing")
    func slowConsumer() async throws {
        try await withTestServer({ $0.maxOutboundBacklog = 1024 * 1024 }) { server in
            let slow = try await server.loggedIn("slow")
            await slow.stopReading()
            let sender = try await server.loggedIn("sender")
            let watcher = try await server.loggedIn("watcher")
            let text = String(repeating: "z", count: 4000)
            for _ in 0..<4000 { try await sender.send(.broadcast(text: text)) }
            #expect(await watcher.next(timeout: 20) { if case .broadcast = $0 { true } else { false } } != nil)
            #expect(try await sender.request(.whoelse, timeout: 60).users?.contains("slow") == false)
            #expect(try await watcher.request(.whoelse, timeout: 60).isOK)
        }
    }
}
