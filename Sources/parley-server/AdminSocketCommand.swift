import ArgumentParser
import Foundation
import ParleyServer
import ParleyServerSettings

/// `parley-server admin ...`: requests to a running server over its admin socket.
struct AdminSocketCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Talk to a running server over its admin socket: who, kick, disable, reload.",
        discussion: """
            The socket is <db>.admin.sock unless the server was started with --admin-socket; only the \
            server's own user (or root) may use it. Exit status: 0 done, 1 refused by the server, 69 no \
            server listening.
            """,
        subcommands: [Who.self, Kick.self, Disable.self, Reload.self])

    /// Where the socket is: given directly, or beside the database.
    struct SocketOptions: ParsableArguments {
        @Option(help: ArgumentHelp("The server's admin socket.", valueName: "PATH"))
        var socket: String?

        @Option(help: ArgumentHelp("The server's database; the socket is PATH.admin.sock.", valueName: "PATH"))
        var db: String?

        func validate() throws {
            if socket != nil, db != nil { throw ValidationError("give --socket or --db, not both") }
            if let socket, socket.isEmpty { throw ValidationError("--socket must not be empty") }
        }

        var path: String { socket ?? ServerSettings.defaultAdminSocket(database: db ?? DatabaseOptions.defaultPath) }
    }

    struct Who: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List online users: address, login time, idle time.")
        @OptionGroup var options: SocketOptions
        func run() async throws { try await AdminSocketCommand.send(.who, options) }
    }

    struct Kick: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Log a user out at once (they see reason 'kicked').")
        @Argument var name: String
        @OptionGroup var options: SocketOptions
        func run() async throws { try await AdminSocketCommand.send(.kick(name), options) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable an account and log its user out at once if online (reason 'disabled').")
        @Argument var name: String
        @OptionGroup var options: SocketOptions
        func run() async throws { try await AdminSocketCommand.send(.disable(name), options) }
    }

    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask the server to reload its configuration (SIGHUP).")
        @OptionGroup var options: SocketOptions
        func run() async throws { try await AdminSocketCommand.send(.reload, options) }
    }

    static func send(_ request: AdminRequest, _ options: SocketOptions) async throws {
        let reply: AdminReply
        do {
            reply = try await AdminClient.send(request, socket: options.path)
        } catch {
            printError("\(error)")
            throw ExitCode(69)
        }
        for line in reply.body { print(line) }
        switch reply.outcome {
        case .ok(let summary):
            if !summary.isEmpty { print(summary) }
        case .error(let error):
            printError("error: \(error.message) (\(error.code.rawValue))")
            throw ExitCode(1)
        }
    }
}
