import Foundation
import NIOCore
import NIOPosix
import ParleyProtocol
@testable import ParleyServer
import ParleyTestSupport
import Testing

/// SIGHUP reloads, SIGTERM drains, with the real binary.
@Suite("parley-server signals: reload and drain", .serialized)
struct SignalTests {
    @Test("SIGHUP with a renewed certificate: an open connection keeps chatting, a new handshake sees the new certificate")
    func reloadCertificate() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let old = try server.certs.leafFingerprint()
        let alice = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        try await alice.login("alice", "password-alice")
        let bob = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        try await bob.login("bob", "password-bob")
        #expect(alice.serverFingerprint == old)

        let renewed = try server.certs.reissueLeaf()
        #expect(renewed != old)
        server.send(SIGHUP)
        #expect(await server.waitForLog("reloaded"), "\(server.log)")
        #expect(server.isRunning)

        #expect(try await alice.request(.message(to: "bob", text: "still here")).isOK)
        #expect(await bob.nextMessage()?.text == "still here")
        let carol = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        #expect(carol.serverFingerprint == renewed, "a new handshake uses the reloaded certificate")
        #expect(alice.serverFingerprint == old)
    }

    @Test("SIGHUP with a broken certificate keeps the old one, logs why, and the server lives")
    func reloadBrokenCertificate() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let old = try server.certs.leafFingerprint()
        let alice = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        try await alice.login("alice", "password-alice")
        try "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
            .write(toFile: server.certs.certificatePath, atomically: true, encoding: .utf8)
        server.send(SIGHUP)
        #expect(await server.waitForLog("reload refused, keeping the running certificate"), "\(server.log)")
        #expect(server.isRunning)
        let bob = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        #expect(bob.serverFingerprint == old)
        #expect(try await bob.login("bob", "password-bob").isOK)
        #expect(try await alice.request(.whoelse).users == ["bob"])
        // A second SIGHUP while the file is still broken: still alive, still refusing.
        server.send(SIGHUP)
        #expect(await server.waitForLog("reload refused", count: 2))
        #expect(server.isRunning)
    }

    @Test("SIGHUP closing registration takes effect for the next login; existing accounts still log in")
    func reloadRegistration() async throws {
        let certs = try TestCertificates.make()
        let config = try writeConfig(#"{"registration-open": true, "log-level": "info"}"#, in: certs.directory)
        let server = try await ServerProcess.start(["--config", config], certs: certs)
        defer { server.stop() }
        let ann = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await ann.login("ann", "password-ann").isOK)
        try #"{"registration-open": false, "log-level": "info"}"#.write(toFile: config, atomically: true, encoding: .utf8)
        server.send(SIGHUP)
        #expect(await server.waitForLog("reloaded"), "\(server.log)")
        #expect(server.log.contains("registration-open"), "the reload names what changed")
        let newcomer = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await newcomer.login("newcomer", "password-new").code == .registrationClosed)
        try await ann.request(.logout)
        let again = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await again.login("ann", "password-ann").isOK)
    }

    @Test("SIGHUP with an invalid file changes nothing; a setting that needs a restart is named and kept")
    func reloadInvalidConfig() async throws {
        let certs = try TestCertificates.make()
        let config = try writeConfig(#"{"registration-open": false}"#, in: certs.directory)
        let server = try await ServerProcess.start(["--config", config], certs: certs)
        defer { server.stop() }
        try #"{"registration-open": true, "bogus": 1}"#.write(toFile: config, atomically: true, encoding: .utf8)
        server.send(SIGHUP)
        #expect(await server.waitForLog("reload refused, keeping the running settings: unknown key \"bogus\""), "\(server.log)")
        let c = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await c.login("someone", "password-x").code == .registrationClosed, "the broken file's value was not taken")
        try #"{"registration-open": false, "threads": 1}"#.write(toFile: config, atomically: true, encoding: .utf8)
        server.send(SIGHUP)
        #expect(await server.waitForLog("threads ("), "\(server.log)")
        #expect(server.log.contains("needs a restart"))
    }

    @Test("SIGTERM with users online: each gets loggedout server_shutdown, and the process exits 0 within the drain bound")
    func drainOnSigterm() async throws {
        // Debug logging and a variable standing for a secret: the shutdown logs must not print the environment.
        let server = try await ServerProcess.start(
            ["--drain-timeout", "5", "--log-level", "debug"], environment: ["PARLEY_TEST_CANARY": "canary-secret-value"])
        defer { server.stop() }
        var users: [TestChatClient] = []
        for name in ["ann", "ben", "cat"] {
            let client = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
            try await client.login(name, "password-\(name)")
            users.append(client)
        }
        let started = ContinuousClock.now
        server.send(SIGTERM)
        for user in users {
            #expect(await user.next(timeout: 10) { $0 == .loggedOut(reason: .serverShutdown) } != nil)
            #expect(await user.waitForClose())
        }
        #expect(await server.waitForExit(timeout: 10) == 0)
        #expect(ContinuousClock.now - started < .seconds(8))
        #expect(server.log.contains("draining"))
        #expect(!server.log.contains("canary-secret-value"), "the environment reached the log")
    }

    @Test("SIGINT drains the same way and exits 0")
    func drainOnSigint() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let ann = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        try await ann.login("ann", "password-ann")
        server.send(SIGINT)
        #expect(await ann.next(timeout: 10) { $0 == .loggedOut(reason: .serverShutdown) } != nil)
        #expect(await server.waitForExit(timeout: 15) == 0)
    }
}

@Suite("Drain bound")
struct DrainBoundTests {
    @Test("work that ends in time reports true; work still going at the deadline reports false at the deadline")
    func bound() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        #expect(await ChatServer.finishes(within: .seconds(60), on: loop) {})
        let stuck = loop.makePromise(of: Void.self)
        let started = ContinuousClock.now
        #expect(!(await ChatServer.finishes(within: .milliseconds(200), on: loop) { try? await stuck.futureResult.get() }))
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(190) && waited < .seconds(3))
        stuck.succeed()
    }
}
