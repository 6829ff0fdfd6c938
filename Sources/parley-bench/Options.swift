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

// MARK: options

struct Common: ParsableArguments {
    @Option(help: "Server address.") var host = "127.0.0.1"
    @Option(help: "Server port.") var port = 3331
    @Option(
        name: .customLong("also-port"),
        help: "Another node of the same cluster (repeatable): client i connects to the (i mod nodes)-th port, --port first.")
    var alsoPorts: [Int] = []
    @Option(help: ArgumentHelp("CA certificate that signed the server's (PEM).", valueName: "PATH")) var ca = "certs/ca.pem"
    @Option(name: .customLong("server-name"), help: "Name checked against the server certificate.") var serverName = "localhost"
    @Option(name: .customLong("server-pid"), help: "Server process id: its CPU seconds and RSS are reported.") var serverPid: Int32?
    @Option(
        name: .customLong("also-server-pid"),
        help: "Another server process (repeatable, e.g. the other cluster nodes): its CPU and RSS are added to --server-pid's.")
    var alsoServerPids: [Int32] = []
    @Option(
        name: .customLong("database-user"),
        help: ArgumentHelp("Report the CPU of every process this user runs (e.g. postgres) as the database's.", valueName: "NAME"))
    var databaseUser: String?
    @Option(name: .customLong("user-prefix"), help: "User names are <prefix><i>.") var userPrefix = "bench-"
    @Option(name: .customLong("password-prefix"), help: "Passwords are <prefix><i> (8+ bytes in all).") var passwordPrefix = "password-"
    @Option(name: .customLong("connect-concurrency"), help: "Connects/logins in progress at once.") var connectConcurrency = 64
    @Option(name: .customLong("login-timeout"), help: "Hard limit (s) on connecting and logging in everybody.") var loginTimeout: Double = 120
    @Option(help: "Seconds to wait after logins before measuring (lets presence fan-out settle).") var settle: Double = 1
    @Option(help: "Hard limit (s) on waiting for outstanding deliveries after sending stops.") var drain: Double = 5
    @Flag(help: "Print one JSON object instead of text lines.") var json = false

    /// Every node's port, --port first.
    var ports: [Int] { [port] + alsoPorts }

    func name(_ i: Int) -> String { "\(userPrefix)\(i)" }
    func password(_ i: Int) -> String { "\(passwordPrefix)\(i)" }
}

struct Traffic: ParsableArguments {
    @Option(name: .shortAndLong, help: "Total messages per second over all senders; 0 = open loop (see --max-inflight).") var rate: Double = 200
    @Option(name: [.customShort("d"), .long], help: "Measured seconds.") var duration: Double = 10
    @Option(help: "Seconds of unmeasured sending before the measurement.") var warmup: Double = 2
    @Option(name: .customLong("max-inflight"), help: "Open loop (-r 0): messages in flight at most.") var maxInflight = 100
    @Option(help: "Bytes of padding added to each message text.") var padding = 0
}
