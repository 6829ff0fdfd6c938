import Foundation
import ParleyServer
import ParleyTestSupport
import Testing

/// Runs the built `parley-bench` binary with `--json` against `server`; the parsed report.
struct BenchRun {
    var status: Int32
    var output: String
    var report: [String: Any]

    static var binary: URL { ServerProcess.productURL("parley-bench") }

    static func run(_ server: TestServer, _ scenario: String, _ arguments: [String], timeout: Double = 30) async throws -> BenchRun {
        // No --server-pid: the server is this test process.
        let run = try await BinaryRun.run(
            binary, [scenario, "--port", String(server.port), "--ca", server.certs.caPath, "--json", "--settle", "0.2"] + arguments,
            stdin: nil, separateStderr: true, timeout: timeout)
        let text = run.output, errText = run.errors
        let line = text.split(separator: "\n").last.map(String.init) ?? ""
        let report = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        return BenchRun(status: run.status, output: text + errText, report: report)
    }

    func int(_ path: String...) -> Int? {
        var value: Any? = report
        for key in path { value = (value as? [String: Any])?[key] }
        return (value as? NSNumber)?.intValue
    }

    func bool(_ key: String) -> Bool? { (report[key] as? NSNumber)?.boolValue }
}

/// Each scenario with tiny parameters against an in-process server (test hash cost). Checks the
/// exit status and, from the JSON, that nothing was lost or duplicated and something was delivered.
@Suite("parley-bench scenarios against the real server (smoke)", .serialized)
struct BenchSmokeTests {
    private func bench(_ scenario: String, _ arguments: [String]) async throws -> BenchRun {
        var result: BenchRun?
        try await withTestServer({ $0.maxPendingHashes = 100_000 }) { server in
            result = try await BenchRun.run(server, scenario, arguments)
        }
        let run = try #require(result)
        #expect(run.status == 0, "exit \(run.status): \(run.output)")
        #expect(run.report["scenario"] as? String == scenario, "\(run.output)")
        return run
    }

    @Test func fanout() async throws {
        let run = try await bench("fanout", ["-n", "20", "-s", "2", "-r", "50", "-d", "1", "--warmup", "0", "--user-prefix", "fan-"])
        #expect(run.int("lost") == 0)
        #expect(run.int("dup") == 0)
        // 50 msg/s for 1 s to 19 recipients each.
        #expect((run.int("deliveries_measured") ?? 0) > 0)
        #expect(run.int("login", "ok") == 20)
    }

    @Test func direct() async throws {
        let run = try await bench("direct", ["-n", "10", "-r", "100", "-d", "1", "--warmup", "0", "--user-prefix", "dir-"])
        #expect(run.int("lost") == 0)
        #expect(run.int("dup") == 0)
        #expect((run.int("deliveries_measured") ?? 0) > 0)
    }

    @Test func offline() async throws {
        let run = try await bench("offline", ["-m", "20", "--user-prefix", "off-"])
        #expect(run.int("received") == 20)
        #expect(run.int("dup") == 0)
        #expect(run.int("missing") == 0)
        #expect(run.int("left_after_acks") == 0)
    }

    /// Against the server only (`--openssl-port 0`): the comparison with `openssl s_server` needs
    /// the openssl binary and a second port; scripts/bench-scenarios.sh runs that part.
    @Test func handshakeAgainstTheServerOnly() async throws {
        let run = try await bench("handshake", ["-d", "0.5", "-c", "2", "--openssl-port", "0"])
        #expect((run.int("parley", "handshakes") ?? 0) > 0)
        #expect(run.int("parley", "failures") == 0)
        #expect(run.report["openssl_s_server"] == nil)
    }

    @Test func idle() async throws {
        let run = try await bench("idle", ["-n", "50", "--user-prefix", "idle-"])
        #expect(run.int("login", "ok") == 50)
        #expect(run.int("login", "registered") == 50)
        #expect(run.int("dropped_while_idle") == 0)
    }

    @Test func privateSession() async throws {
        let run = try await bench("private", ["-d", "1", "--warmup", "0.2", "--throughput-duration", "0.5", "--user-prefix", "prv-"])
        #expect(run.int("lost") == 0)
        #expect(run.int("dup") == 0)
        #expect((run.int("deliveries") ?? 0) > 0)
        #expect((run.int("latency", "count") ?? 0) > 0)
        #expect((run.int("throughput_phase", "received") ?? 0) > 0)
        #expect(run.bool("safety_codes_match") == true)
        #expect(run.bool("pins_verified") == true)
    }

    /// With the test hash cost the burst's registrations are cheap: this checks the mechanics, not
    /// the production-cost figures (scripts/bench-scenarios.sh runs it at production cost).
    @Test func loginBurst() async throws {
        let run = try await bench(
            "login-burst",
            ["-n", "10", "-s", "2", "-r", "50", "--warmup", "0.3", "-b", "5", "--before", "0.5", "--after", "0.5", "--user-prefix", "lb-"])
        #expect(run.int("lost") == 0)
        #expect(run.int("dup") == 0)
        #expect(run.int("burst_login", "ok") == 5)
        #expect((run.int("deliveries_measured") ?? 0) > 0)
    }
}
