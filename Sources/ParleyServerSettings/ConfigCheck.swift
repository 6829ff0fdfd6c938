import Foundation
import ParleyPostgres
import ParleyServer
import ParleyStore
import ParleyTLS

/// One line of `parley-server check`.
public struct CheckLine: Sendable, Equatable, CustomStringConvertible {
    public enum Status: String, Sendable { case ok, warning, problem }
    public var status: Status
    public var text: String

    public var description: String { "\(status.rawValue): \(text)" }
}

/// What `parley-server check` looks at, in order: the settings (already loaded), the certificate
/// chain, the key, the database's files and its integrity. Each finding is one line.
public enum ConfigCheck {
    /// Certificates with fewer days left than this get a warning.
    public static let renewalWarningDays = 30

    public static func run(_ loaded: LoadedSettings, now: Date = Date()) async -> [CheckLine] {
        var lines: [CheckLine] = []
        let settings = loaded.settings.server
        let origin = Set(loaded.sources.values.map(\.description)).sorted().joined(separator: ", ")
        lines.append(.init(status: .ok, text: "configuration: \(ServerSettings.table.count) settings valid (set by: \(origin.isEmpty ? "defaults only" : origin))"))
        lines += certificateLines(settings.certificatePath, now: now)
        lines += keyLines(settings.privateKeyPath, certificatePath: settings.certificatePath)
        switch settings.database {
        case .sqlite(let path):
            lines += await databaseLines(path)
        case .postgres(let url):
            lines += await postgresLines(url, passwordFile: loaded.settings.databasePasswordFile)
        }
        return lines
    }

    /// Connects once (read only): reachable, the server's version, the schema version against this
    /// build's, and that the tables the recorded version implies exist.
    static func postgresLines(_ url: PostgresURL, passwordFile: String?) async -> [CheckLine] {
        let password: DatabasePassword?
        do {
            password = try DatabasePassword.load(file: passwordFile)
        } catch {
            return [.init(status: .problem, text: "database password: \(error)")]
        }
        let health: PostgresHealth
        do {
            health = try await PostgresStore.inspect(url: url, password: password)
        } catch {
            return [.init(status: .problem, text: "database: \(error)")]
        }
        let latest = PostgresStore.schemaVersion
        var lines = [CheckLine(status: .ok, text: "database: PostgreSQL \(url) reachable (server \(health.serverVersion))")]
        switch health.schemaVersion {
        case 0:
            lines.append(.init(status: .ok, text: "database schema: empty; the server creates it (version \(latest)) at first start"))
        case latest:
            lines.append(.init(status: .ok, text: "database schema: version \(latest), current"))
        case let found where found > latest:
            lines.append(.init(status: .problem, text: "database schema: version \(found) is newer than this build's \(latest); upgrade parley-server"))
        case let found:
            lines.append(.init(status: .ok, text: "database schema: version \(found); the server migrates it to \(latest) at start"))
        }
        if !health.missingTables.isEmpty {
            lines.append(.init(status: .problem, text: "database schema: version \(health.schemaVersion) recorded but tables missing: \(health.missingTables.joined(separator: ", "))"))
        }
        return lines
    }

    static func certificateLines(_ path: String, now: Date) -> [CheckLine] {
        let chain: [CertificateInfo]
        do {
            chain = try CertificateInfo.chain(inPEMFile: path)
        } catch {
            return [.init(status: .problem, text: "certificate: \(error)")]
        }
        let format = ISO8601DateFormatter()
        return chain.enumerated().map { index, certificate in
            let which = index == 0 ? "certificate \(path)" : "certificate \(path) #\(index + 1) in the chain"
            let name = "\(which) (\(certificate.subject))"
            if certificate.notBefore > now {
                return .init(status: .problem, text: "\(name) is not valid before \(format.string(from: certificate.notBefore))")
            }
            let days = certificate.daysLeft(at: now)
            if certificate.notAfter <= now {
                return .init(status: .problem, text: "\(name) expired on \(format.string(from: certificate.notAfter)); renew it (docs/OPERATIONS.md)")
            }
            let until = "valid until \(format.string(from: certificate.notAfter)), \(days) days left"
            if days < renewalWarningDays {
                return .init(status: .warning, text: "\(name) \(until): renew it soon (docs/OPERATIONS.md)")
            }
            return .init(status: .ok, text: "\(name) \(until)")
        }
    }

    static func keyLines(_ keyPath: String, certificatePath: String) -> [CheckLine] {
        var lines: [CheckLine] = []
        switch FileFacts(path: keyPath) {
        case nil:
            return [.init(status: .problem, text: "private key \(keyPath): cannot read it")]
        case let facts?:
            let issues = facts.ownerIssues + (facts.mode & 0o077 != 0 ? ["group or others can read it; run: chmod 600 \(keyPath)"] : [])
            lines.append(
                issues.isEmpty
                    ? .init(status: .ok, text: "private key \(keyPath): mode \(facts.modeText), owned by the server's user")
                    : .init(status: .problem, text: "private key \(keyPath): mode \(facts.modeText): \(issues.joined(separator: "; "))"))
        }
        do {
            try TLSContext.checkKeyMatchesCertificate(certificatePath: certificatePath, privateKeyPath: keyPath)
            lines.append(.init(status: .ok, text: "private key \(keyPath) matches the certificate"))
        } catch {
            lines.append(.init(status: .problem, text: "\(error)"))
        }
        return lines
    }

    static func databaseLines(_ path: String) async -> [CheckLine] {
        var lines: [CheckLine] = []
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if let dir = FileFacts(path: directory) {
            var issues = dir.ownerIssues
            if dir.mode & 0o022 != 0, dir.mode & 0o1000 == 0 {
                issues.append("group or others can write it (and replace the database); run: chmod go-w \(directory)")
            }
            if access(directory, W_OK) != 0 { issues.append("the server cannot write in it (SQLite needs the -wal and -shm files beside the database)") }
            lines.append(
                issues.isEmpty
                    ? .init(status: .ok, text: "database directory \(directory): mode \(dir.modeText)")
                    : .init(status: .problem, text: "database directory \(directory): mode \(dir.modeText): \(issues.joined(separator: "; "))"))
        } else {
            return [.init(status: .problem, text: "database directory \(directory) does not exist")]
        }
        guard FileManager.default.fileExists(atPath: path) else {
            lines.append(.init(status: .ok, text: "database \(path) does not exist yet: the server creates it (mode 0600) at first start"))
            return lines
        }
        for file in [path, path + "-wal", path + "-shm"] {
            guard let facts = FileFacts(path: file) else { continue }
            let issues = facts.ownerIssues + (facts.mode & 0o077 != 0 ? ["group or others can read the password hashes; run: chmod 600 \(file)"] : [])
            lines.append(
                issues.isEmpty
                    ? .init(status: .ok, text: "database file \(file): mode \(facts.modeText)")
                    : .init(status: .problem, text: "database file \(file): mode \(facts.modeText): \(issues.joined(separator: "; "))"))
        }
        do {
            let problems = try await SQLiteStore.quickCheck(path: path)
            if problems.isEmpty {
                lines.append(.init(status: .ok, text: "database \(path): PRAGMA quick_check ok"))
            } else {
                for problem in problems.prefix(10) {
                    lines.append(.init(status: .problem, text: "database \(path) is damaged (quick_check): \(problem)"))
                }
            }
        } catch {
            lines.append(.init(status: .problem, text: "database \(path) cannot be checked: \(error)"))
        }
        return lines
    }
}

/// Mode and owner of a file, for the permission lines.
struct FileFacts {
    var mode: UInt32
    var owner: uid_t

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        mode = UInt32(info.st_mode) & 0o7777
        owner = info.st_uid
    }

    var modeText: String { "0" + String(mode & 0o777, radix: 8) }

    /// Owned by someone other than the user running the check (the server's user) or root.
    var ownerIssues: [String] {
        let me = geteuid()
        return owner == me || owner == 0 ? [] : ["owned by uid \(owner), not the server's user (uid \(me))"]
    }
}
