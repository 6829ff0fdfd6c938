import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

/// The limits reload with the rest of the settings, and `parley-server admin reload` is the same
/// reload as SIGHUP.
@Suite("Reloading limits through the admin socket", .serialized)
struct ReloadLimitsTests {
    @Test("admin reload raises max-connections-per-address for the next accept; connections already open stay")
    func adminReloadAppliesNewLimits() async throws {
        let certs = try TestCertificates.make()
        let config = certs.directory.appendingPathComponent("limits.json").path
        try #"{"max-connections-per-address": 2}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let server = try await ServerProcess.start(["--config", config], certs: certs, raisedLimits: false)
        defer { server.stop(); certs.remove() }
        let first = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await first.login("ann", "password-ann").isOK)
        let second = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await second.login("ben", "password-ben").isOK)
        let refused = try await RawConnection.connect(port: server.port)
        #expect(await refused.receivedUntilClose()?.contains("too_many_connections") == true)

        try #"{"max-connections-per-address": 3}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let reload = try await BinaryRun.run(ServerBinary.url, ["admin", "reload", "--db", server.databasePath], timeout: 30)
        #expect(reload.status == 0, "\(reload.output)")
        #expect(await server.waitForLog("reloaded"), "\(server.log)")
        #expect(server.log.contains("max-connections-per-address"), "the reload names what changed")
        let third = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await third.login("cat", "password-cat").isOK)
        // The two already open went on through the reload.
        #expect(try await first.request(.whoelse).isOK)
        #expect(try await second.request(.whoelse).isOK)
    }
}
