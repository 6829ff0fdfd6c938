import Foundation
import ParleyProtocol

/// One server the client may use: a host name or IP address and a port.
public struct ServerEndpoint: Sendable, Hashable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with an IPv6 address in brackets so the port stays readable.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// At most this many servers in one `--host` list.
    public static let maxListed = 16

    /// Parses a `--host` value: one or more comma-separated `HOST`, `HOST:PORT`, `[IPV6]` or
    /// `[IPV6]:PORT` entries; an entry without a port gets `defaultPort`. A bare IPv6 address
    /// (more than one colon, no brackets) is a host without a port.
    public static func parseList(_ text: String, defaultPort: Int) throws(ServerListError) -> [ServerEndpoint] {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard entries.count <= maxListed else { throw .tooMany(entries.count) }
        var servers: [ServerEndpoint] = []
        for entry in entries {
            let server = try parse(entry, defaultPort: defaultPort)
            guard !servers.contains(server) else { throw .duplicate(server.description) }
            servers.append(server)
        }
        return servers
    }

    private static func parse(_ entry: String, defaultPort: Int) throws(ServerListError) -> ServerEndpoint {
        guard !entry.isEmpty else { throw .emptyEntry }
        var host = Substring(entry)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw .badEntry(entry, "missing ']' after the IPv6 address") }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw .badEntry(entry, "expected ':PORT' after ']'") }
                portText = rest.dropFirst()
            }
        } else if host.count(where: { $0 == ":" }) == 1, let colon = host.firstIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw .badEntry(entry, "the host is empty") }
        guard host.allSatisfy({ !$0.isWhitespace && $0 != "/" && $0 != "@" }) else {
            throw .badEntry(entry, "not a host name or IP address")
        }
        var port = defaultPort
        if let portText {
            guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), portText.count <= 5,
                let number = Int(portText)
            else { throw .badEntry(entry, "the port is not a number") }
            port = number
        }
        guard (1...65535).contains(port) else { throw .badEntry(entry, "port \(port) is not in 1-65535") }
        return ServerEndpoint(host: String(host), port: port)
    }
}

/// Why a `--host` list was refused; `description` is the message for the person.
public enum ServerListError: Error, Sendable, Equatable, CustomStringConvertible {
    case emptyEntry
    case badEntry(String, String)
    case duplicate(String)
    case tooMany(Int)

    public var description: String {
        switch self {
        case .emptyEntry: "--host has an empty entry (expected HOST[:PORT],HOST[:PORT],...)"
        case .badEntry(let entry, let why): "--host entry '\(entry)': \(why)"
        case .duplicate(let server): "--host lists \(server) twice"
        case .tooMany(let count): "--host lists \(count) servers; at most \(ServerEndpoint.maxListed)"
        }
    }
}
