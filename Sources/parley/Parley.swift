import ArgumentParser
import Foundation
import ParleyClient
import ParleyProtocol
import ParleyTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `parley` command: a TLS terminal chat client.
@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "Parley: a TLS-secured terminal chat client.",
        usage: """
            parley [--host <host>[:<port>],...] [--port <port>] [--ca <file>] [--server-name <name>] [--json]
                     [--username <name>] [--reconnect-attempts <n>]
              parley <port>
            """,
        discussion: """
            Logs in (registering the account if the name is new), then reads commands; type 'help' \
            for the list. The password is never taken from the command line or the environment: it \
            is read from the terminal without echo, or as the second line of standard input.

            When standard input is not a terminal, the input is: username line, password line, then \
            one command per line. Commands are sent as they are read, without waiting for earlier \
            replies; output keeps the order they were typed in, and end of input logs out. --json prints every event and reply as one JSON object per line.

            --host may list several servers (a:3331,b:3331). A connection lost without a logout is \
            reconnected (back-off 0.5 s doubling to 10 s, with jitter), to the next listed server, \
            logging in again with the password kept in memory; `passwd` changes the password.

            Exit status: 0 logged out / end of input, 64 usage error, 65 bad credentials, \
            66 account locked, 67 logged out for inactivity, 68 connection lost or closed by the \
            server, 69 TLS certificate verification failed, 70 other error, 71 already logged in \
            elsewhere. See docs/CLIENT.md.
            """)

    @Argument(help: ArgumentHelp("Server port (the original 'parley PORT' form); same as --port.", valueName: "port"))
    var positionalPort: Int?

    @Option(help: ArgumentHelp(
        "Server host name or IP address, or a comma-separated list of HOST[:PORT] ([IPV6]:PORT) to use in turn.",
        valueName: "host"))
    var host = "127.0.0.1"

    @Option(help: "Server port (1-65535). (default: 3331)")
    var port: Int?

    @Option(help: ArgumentHelp("CA certificate (PEM) the server's certificate must chain to.", valueName: "file"))
    var ca = "certs/ca.pem"

    @Option(help: ArgumentHelp("Name the server's certificate must match. (default: the host)", valueName: "name"))
    var serverName: String?

    @Flag(help: "Print every event and reply as one JSON object per line.")
    var json = false

    @Option(help: ArgumentHelp("Log in as this user instead of asking.", valueName: "name"))
    var username: String?

    @Option(help: ArgumentHelp(
        "Tries after a lost connection before giving up (0: never reconnect). (default: 30)", valueName: "n"))
    var reconnectAttempts: Int = 30

    var effectivePort: Int { port ?? positionalPort ?? 3331 }

    /// The servers named by `--host`; an entry without a port uses `--port` (or the default).
    func servers() throws(ServerListError) -> [ServerEndpoint] {
        try ServerEndpoint.parseList(host, defaultPort: effectivePort)
    }

    func validate() throws {
        if let port, let positionalPort, port != positionalPort {
            throw ValidationError("The port was given twice with different values (\(positionalPort) and --port \(port)).")
        }
        guard (1...65535).contains(effectivePort) else {
            throw ValidationError("Invalid port \(effectivePort): expected 1-65535.")
        }
        guard !host.isEmpty else { throw ValidationError("--host must not be empty.") }
        do {
            _ = try servers()
        } catch {
            throw ValidationError("\(error)")
        }
        guard (0...1000).contains(reconnectAttempts) else {
            throw ValidationError("Invalid --reconnect-attempts \(reconnectAttempts): expected 0-1000.")
        }
        if let username, !Validation.isValidUsername(username) {
            throw ValidationError("Invalid username '\(username)': \(ErrorCode.invalidUsername.defaultMessage)")
        }
        guard access(ca, R_OK) == 0 else {
            throw ValidationError("Cannot read the CA certificate '\(ca)' (use --ca to point at the server's CA).")
        }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let terminal = TerminalState()
        let editor = isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 ? LineEditor() : nil
        let status = await session(editor: editor)
        editor?.finish()
        terminal.restore()
        terminateProcess(status.rawValue)
    }

    private func session(editor: LineEditor?) async -> ExitStatus {
        let format: OutputFormat = json ? .json : .human
        let input: LineSource = editor ?? ScriptedInput()
        let output: OutputSink = editor ?? PlainOutput()
        let report = { (code: String, message: String) in
            output.emit(Presenter.render(.local(.clientError(code: code, message: message)), format: format))
        }

        let context: TLSContext
        do {
            context = try TLSContext(role: .client(trustedCAPath: ca))
        } catch {
            report("tls_configuration", "Error. \(error)")
            return .otherError
        }
        guard let servers = try? servers(), !servers.isEmpty else { return .usage }  // validate() refused it already
        let connect: @Sendable (ServerEndpoint) async throws(ClientError) -> ServerConnection = { [serverName] (server: ServerEndpoint) async throws(ClientError) -> ServerConnection in
            try await ServerConnection.connect(
                host: server.host, port: server.port, tlsContext: context, serverHostname: serverName ?? server.host)
        }
        // The first server that answers; a certificate that does not verify stops here (fail closed).
        var connection: ServerConnection?
        var current = 0
        for (index, server) in servers.enumerated() {
            do {
                connection = try await connect(server)
                current = index
                break
            } catch {
                let status = ChatClient.exitStatus(for: error)
                let code = status == .certificateFailed ? "certificate_verification_failed" : "connection_failed"
                report(code, "Error. \(error.description)")
                if status == .certificateFailed || index == servers.count - 1 { return status }
            }
        }
        guard let connection else { return .connectionLost }
        var policy = ReconnectPolicy(servers: servers, current: current)
        policy.maxAttempts = reconnectAttempts
        let session = ChatClient(
            connection: connection, input: input, output: output, format: format, username: username,
            reconnection: reconnectAttempts > 0 ? Reconnection(policy: policy, connect: connect) : nil,
            onlineUsersChanged: { users in editor?.setUsers(users) })
        return await session.run()
    }
}
