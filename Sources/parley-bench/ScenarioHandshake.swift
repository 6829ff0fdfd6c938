#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Dispatch
import Foundation
import Histogram
import NIOCore
import NIOPosix
import ParleyTLS

struct Handshake: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "TLS handshakes/s (connect, handshake, close; no login) against the server and openssl s_server.")
    @OptionGroup var common: Common
    @Option(name: [.customShort("d"), .long], help: "Seconds per target.") var duration: Double = 5
    @Option(name: [.customShort("c"), .long], help: "Concurrent connect/handshake slots.") var concurrency = 16
    @Option(help: "Server certificate for s_server (PEM; the parley server's).") var cert = "certs/server.pem"
    @Option(help: "Server key for s_server.") var key = "certs/server.key"
    @Option(name: .customLong("openssl-port"), help: "Port for openssl s_server (0: skip it).") var opensslPort = 7444
    @Option(help: "openssl binary.") var openssl = "/usr/bin/openssl"

    func run() throws {
        let r = try Run("handshake", common, hardLimit: 2 * duration + 60)
        let e = r.engine
        r.report.add("duration_s", duration, 1)
        r.report.add("concurrency", concurrency)
        r.ensureFiles(concurrency * 4)

        func measure(port: Int, pid: Int32?, key: String) -> Double? {
            let start = nowNs() + 200_000_000  // 0.2 s ramp-up, not counted
            let end = start + UInt64(duration * 1e9)
            let s0 = pid.flatMap { ProcSample.read(pid: $0) }
            e.onLoop { e.handshakeLoop(slots: concurrency, port: port, startNs: start, endNs: end + 10_000_000_000) }
            sleepUntil(start)
            let c0 = pid.flatMap { ProcSample.read(pid: $0) }
            let b0 = ProcSample.selfCPU()
            sleepUntil(end)
            let c1 = pid.flatMap { ProcSample.read(pid: $0) }
            let benchCPU = ProcSample.selfCPU() - b0
            let (count, failures, hist) = e.onLoop {
                e.hsRunning = false
                return (e.handshakesCounted, e.handshakeFailures, UnsafeSendable(e.hsHist))
            }
            _ = waitUntil(e, timeout: 3) { false }  // let the slots finish their last cycle
            let rate = Double(count) / duration
            var fields: [(String, Figure)] = [
                ("handshakes", .int(Int64(count))), ("per_s", .double(rate, decimals: 0)),
                ("failures", .int(Int64(failures))), ("latency", latencyFigure(hist.value)),
            ]
            if let c0, let c1 {
                let cpu = c1.cpuSeconds - c0.cpuSeconds
                fields.append(("server_cpu_s", .double(cpu, decimals: 2)))
                fields.append(("server_cpu_us_per_handshake", .double(count > 0 ? cpu * 1e6 / Double(count) : .nan, decimals: 0)))
            }
            fields.append(("bench_cpu_s", .double(benchCPU, decimals: 2)))
            if let s0 { fields.append(("server_rss_kib_before", .int(Int64(s0.rssKiB)))) }
            if let c1 { fields.append(("server_rss_kib_after", .int(Int64(c1.rssKiB)))) }
            r.report.add(key, .object(fields))
            return rate
        }

        let parleyRate = measure(port: common.port, pid: common.serverPid, key: "parley")
        var opensslRate: Double? = nil
        if opensslPort > 0 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: openssl)
            p.arguments = [
                "s_server", "-accept", "\(common.host):\(opensslPort)", "-cert", cert, "-key", key, "-tls1_3",
                "-ciphersuites", "TLS_AES_128_GCM_SHA256", "-groups", "X25519:P-256", "-num_tickets", "0", "-www", "-quiet",
            ]
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            childToKill = p.processIdentifier
            r.report.add("openssl_command", ([openssl] + p.arguments!).joined(separator: " "))
            // Wait until it accepts.
            var ready = false
            for _ in 0..<100 where !ready {
                sleepSeconds(0.05)
                ready = tcpConnects(host: common.host, port: opensslPort)
            }
            if ready {
                opensslRate = measure(port: opensslPort, pid: p.processIdentifier, key: "openssl_s_server")
            } else {
                r.report.add("openssl_s_server", "did not start listening on \(opensslPort)")
            }
            p.terminate()
            p.waitUntilExit()
            childToKill = 0
        }
        if let parleyRate, let opensslRate, opensslRate > 0 {
            r.report.add("ratio_parley_to_openssl", parleyRate / opensslRate, 2)
        }
        r.finish(ok: true)
    }
}

func tcpConnects(host: String, port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &addr.sin_addr)
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
