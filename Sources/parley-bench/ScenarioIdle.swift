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

struct Idle: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "N connections logged in and idle: server RSS per connection, login times.")
    @OptionGroup var common: Common
    @Option(name: .shortAndLong, help: "Connections.") var n = 10000

    func run() throws {
        let r = try Run("idle", common, hardLimit: common.loginTimeout + common.settle + 60)
        let e = r.engine
        r.report.add("clients", n)
        r.ensureFiles(n)
        let list = r.clients(0..<n)
        let s0 = r.server()
        let ok = r.loginAll(list, key: "login")
        let s1 = r.server()
        sleepSeconds(common.settle)
        let s2 = r.server()
        r.addServer("server_before", s0)
        r.addServer("server_after_login", s1)
        r.addServer("server_after_settle", s2)
        if let s0, let s2 {
            r.report.add("server_rss_kib_per_connection", Double(s2.rssKiB - s0.rssKiB) / Double(n), 2)
            r.report.add("server_cpu_s_logins", s2.cpuSeconds - s0.cpuSeconds, 2)
        }
        let closes = e.onLoop { e.unexpectedCloses + e.loggedOut }
        r.report.add("dropped_while_idle", closes)
        _ = try? e.onLoop { e.closeAll(list) }.wait()
        r.finish(ok: ok && closes == 0)
    }
}
