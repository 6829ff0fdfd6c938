import Foundation
import ParleyTestSupport
import Testing

/// Settings and systemd notifications through the real binary.
@Suite("parley-server settings and sd_notify (binary)", .serialized)
struct ServerSettingsBinaryTests {
    @Test("flag beats environment beats file, as the server logs at start")
    func precedence() async throws {
        let certs = try TestCertificates.make()
        let config = try writeConfig(#"{"timeout": 100, "block-duration": 7, "max-pending-logins": 99}"#, in: certs.directory)
        let server = try await ServerProcess.start(
            ["--config", config, "--timeout", "30"], environment: ["PARLEY_TIMEOUT": "50", "PARLEY_BLOCK_DURATION": "8"],
            certs: certs)
        defer { server.stop() }
        let log = server.log
        #expect(log.contains("setting timeout=30 from command line --timeout"), "\(log)")
        #expect(log.contains("setting block-duration=8 from environment variable PARLEY_BLOCK_DURATION"))
        #expect(log.contains("setting max-pending-logins=99 from configuration file \(config)"))
    }

    @Test("the exercise's positional form still serves, with files from the environment")
    func positionalForm() async throws {
        let certs = try TestCertificates.make()
        let server = try await ServerProcess.start(
            ["0", "5", "60"],
            environment: [
                "PARLEY_CERT": certs.certificatePath, "PARLEY_KEY": certs.keyPath,
                "PARLEY_DB": certs.directory.appendingPathComponent("p.sqlite").path, "PARLEY_INSECURE_HASH_COST": "10",
            ],
            certs: certs, standardFlags: false)
        defer { server.stop() }
        #expect(server.log.contains("setting block-duration=5 from BLOCK_DURATION argument"))
        let client = try await TestChatClient.connect(port: server.port, caPath: certs.caPath)
        #expect(try await client.login("ann", "password-ann").isOK)
    }

    @Test("bad values from each source exit non-zero with one line naming key, value and source")
    func badValues() async throws {
        let env = try await BinaryRun.run(ServerBinary.url, [], environment: ["PARLEY_PORT": "abc"], timeout: 30)
        #expect(env.status == 78)
        #expect(env.output.contains(#"parley-server: port must be an integer, got "abc" (environment variable PARLEY_PORT)"#), "\(env.output)")
        let directory = FileManager.default.temporaryDirectory
        let config = try writeConfig(#"{"prot": 1}"#, in: directory, name: "parley-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(atPath: config) }
        let file = try await BinaryRun.run(ServerBinary.url, ["--config", config], timeout: 30)
        #expect(file.status == 78)
        #expect(file.output.contains("unknown key \"prot\" in configuration file \(config)"))
        let flag = try await BinaryRun.run(ServerBinary.url, ["--timeout", "soon"], timeout: 30)
        #expect(flag.status == 64)
        #expect(flag.output.contains(#"timeout must be an integer, got "soon" (command line --timeout)"#), "\(flag.output)")
        #expect(flag.output.split(separator: "\n").count == 1, "one line")
    }

    @Test("NOTIFY_SOCKET (abstract): READY=1 after listening, RELOADING=1 with MONOTONIC_USEC then READY=1, STOPPING=1")
    func systemdNotifications() async throws {
        let name = "parley-notify-test-\(UUID().uuidString.prefix(8))"
        let socket = try NotifySocket(abstractName: name)
        let server = try await ServerProcess.start(environment: ["NOTIFY_SOCKET": "@" + name])
        defer { server.stop() }
        let ready = await socket.receive()
        #expect(ready?.hasPrefix("READY=1\n") == true, "\(ready ?? "nothing")")
        #expect(ready?.contains("STATUS=listening on 127.0.0.1:\(server.port)") == true)
        server.send(SIGHUP)
        let reloading = await socket.receive()
        #expect(reloading?.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") == true, "\(reloading ?? "nothing")")
        if let usec = reloading?.split(separator: "\n")[1].split(separator: "=").last.flatMap({ UInt64($0) }) {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let nowUsec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
            #expect(usec <= nowUsec && nowUsec - usec < 30_000_000, "MONOTONIC_USEC is CLOCK_MONOTONIC now")
        } else {
            Issue.record("no MONOTONIC_USEC number")
        }
        #expect(await socket.receive()?.hasPrefix("READY=1") == true)
        server.send(SIGTERM)
        #expect(await socket.receive()?.hasPrefix("STOPPING=1") == true)
        #expect(await server.waitForExit(timeout: 15) == 0)
    }
}

/// A Unix datagram socket in the abstract namespace standing in for systemd's notify socket.
final class NotifySocket: Sendable {
    private let fd: Int32

    init(abstractName: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let name = [UInt8(0)] + Array(abstractName.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: name) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The next datagram, or nil after 20 s (read on a thread of its own: recv blocks).
    func receive() async -> String? {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { [self] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = recv(fd, &buffer, buffer.count, 0)
                continuation.resume(returning: count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil)
            }
        }
    }
}
