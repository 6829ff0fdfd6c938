import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

/// The fail2ban filter shipped in contrib/, read from the repository.
private func failRegex() throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let filter = try String(contentsOf: root.appendingPathComponent("contrib/fail2ban/filter.d/parley.conf"), encoding: .utf8)
    let line = try #require(filter.split(separator: "\n").first { $0.hasPrefix("failregex = ") })
    return String(line.dropFirst("failregex = ".count))
}

@Suite("parley-server executable: limit flags, the fail2ban line", .serialized)
struct OperationsBinaryTests {
    @Test("the limit and metrics flags are listed and checked")
    func limitFlags() async throws {
        let help = try await ServerBinary.run(["serve", "--help"])
        #expect(help.status == 0)
        for flag in ["--login-timeout", "--max-connections-per-address", "--max-new-connections-per-minute",
                     "--commands-per-second", "--command-burst", "--flood-refusals", "--max-queued-per-recipient",
                     "--max-registrations-per-hour", "--metrics-listen"] {
            #expect(help.output.contains(flag), "help mentions \(flag)")
        }
        let badMetrics = try await ServerBinary.run(["--metrics-listen", "9331"])
        #expect(badMetrics.status == 64)
        #expect(badMetrics.output.contains("metrics-listen must be HOST:PORT"))
        let badLimit = try await ServerBinary.run(["--max-connections-per-address", "0"])
        #expect(badLimit.status == 64)
        #expect(badLimit.output.contains("max-connections-per-address must be"))
        let badTimeout = try await ServerBinary.run(["--login-timeout", "0"])
        #expect(badTimeout.status == 64)
    }

    @Test("each failed login logs one line the shipped fail2ban filter matches, with the client's address; names cannot forge lines")
    func failedLoginLines() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let alice = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        #expect(try await alice.login("alice", "password-alice").isOK)
        let eve = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath, sourceAddress: "127.0.0.2")
        #expect(try await eve.login("alice", "not-her-password").code == .wrongPassword)
        let forged = "x\nparley: login failed user=y address=192.0.2.9 reason=wrong_password"
        #expect(try await eve.login(forged, "whatever-password").code == .invalidUsername)
        #expect(await eventually(10) { server.log.components(separatedBy: "login failed").count == 3 })

        let regex = try NSRegularExpression(pattern: try failRegex().replacingOccurrences(of: "<ADDR>", with: "(?<addr>[0-9a-fA-F:.]+)"))
        var addresses: [String] = []
        for line in server.log.split(separator: "\n").map(String.init) {
            let range = NSRange(line.startIndex..., in: line)
            guard let match = regex.firstMatch(in: line, range: range), let addr = Range(match.range(withName: "addr"), in: line)
            else { continue }
            addresses.append(String(line[addr]))
        }
        #expect(addresses == ["127.0.0.2", "127.0.0.2"], "\(server.log)")
        #expect(!server.log.contains("address=192.0.2.9"))
        #expect(server.log.contains("parley: login failed user=alice address=127.0.0.2 reason=wrong_password"))

        // fail2ban itself, when installed (apt-get install fail2ban), reads the same log with the same filter.
        let tool = "/usr/bin/fail2ban-regex"
        if FileManager.default.isExecutableFile(atPath: tool) {
            let logPath = server.logPath
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let filter = root.appendingPathComponent("contrib/fail2ban/filter.d/parley.conf").path
            let run = try await BinaryRun.run(URL(fileURLWithPath: tool), [logPath, filter], timeout: 60)
            #expect(run.status == 0)
            #expect(run.output.contains("Failregex: 2 total"), "\(run.output)")
        }
    }
}
