import ParleyClient
import ParleyProtocol
import ParleyServer
import ParleyTLS
import ParleyTestSupport
import Testing

@Suite("Limit notices in words")
struct LimitNoticeTests {
    func human(_ output: Output) -> [String] { Presenter.render(output, format: .human) }

    @Test func everyLimitCodeAndTheFloodingLogoutHaveWords() {
        #expect(human(.event(.loggedOut(reason: .flooding))) == ["You have been logged out for sending too many commands too fast."])
        for code in [ErrorCode.tooManyConnections, .tooManyNewConnections, .tooManyRegistrations, .recipientQueueFull] {
            #expect(human(.reply(.error(id: 1, code), command: .whoelse)) == [code.defaultMessage])
            #expect(!code.defaultMessage.isEmpty)
        }
        #expect(human(.login(.refused(code: .tooManyRegistrations, message: ""))) == [ErrorCode.tooManyRegistrations.defaultMessage])
        #expect(ClientError.refused(.tooManyConnections).description
                == "the server refused the connection: Too many connections from your address; close one and try again")
        #expect(ParleyClient.ChatClient.exitStatus(for: .refused(.tooManyNewConnections)) == .connectionLost)
    }

    @Test("the terminal client's connection reports a refusal at accept as refused(code), not as a TLS error")
    func refusalBeforeTLS() async throws {
        try await withTestServer({ $0.limits.maxNewConnectionsPerMinute = 1 }) { server in
            let tls = try TLSContext(role: .client(trustedCAPath: server.certs.caPath))
            let first = try await server.client()  // the one new connection of this minute
            do {
                _ = try await ServerConnection.connect(host: "127.0.0.1", port: server.port, tlsContext: tls, serverHostname: "localhost")
                Issue.record("a second new connection within the minute was let in")
            } catch {
                #expect(error as? ClientError == .refused(.tooManyNewConnections))
            }
            // The library connection (parley-bench, tests) says the same.
            do {
                _ = try await ChatConnection.connect(host: "127.0.0.1", port: server.port, tlsContext: tls, serverHostname: "localhost")
                Issue.record("a third new connection within the minute was let in")
            } catch {
                #expect(error as? ClientError == .refused(.tooManyNewConnections))
            }
            await first.close()
        }
    }
}
