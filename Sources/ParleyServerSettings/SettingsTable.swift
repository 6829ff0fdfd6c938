import Configuration
import Logging
import ParleyCrypto
import ParleyServer

extension ServerSettings {
    /// Every setting `parley-server` takes, once. To add one, add one entry here (a field in
    /// `ServerConfiguration` or `ServerSettings` for it to land in); flags, environment, the
    /// file, help, `check` and reload follow. A reloadable one must also be read from the
    /// server's `RuntimeSettings` (see `ServerReloader`), not from the start-up configuration.
    public static let table: [Setting] = [
        .int("port", range: 0...65535, help: "TCP port to listen on (0: any free port).", \.server.port),
        .string("bind", valueName: "ADDRESS", help: "Address to listen on.", \.server.host),
        .duration(
            "block-duration", range: 1...oneYear, reloadable: true,
            help: "Seconds a name stays locked after 3 wrong passwords.", \.server.blockDuration),
        .duration(
            "timeout", range: 1...oneYear, reloadable: true,
            help: "Seconds without a command before a user is logged out (new connections).", \.server.idleTimeout),
        .string("cert", reloadable: true, valueName: "PATH", help: "Server certificate chain (PEM, leaf first).", \.server.certificatePath),
        .string("key", reloadable: true, valueName: "PATH", help: "Server private key (PEM, mode 0600).", \.server.privateKeyPath),
        Setting(
            key: "db", type: .string, valueName: "PATH|URL",
            help: "SQLite database file, or postgresql://USER@HOST:PORT/DB (also postgresql://USER@/DB?host=/socket/dir): nodes on one PostgreSQL database form a cluster.",
            read: { $0.server.database.description },
            write: { settings, content in
                guard case .string(let value) = content, !value.isEmpty else { return "must be a file path or a postgresql:// URL" }
                do {
                    settings.server.database = try StoreLocation(parsing: value)
                } catch {
                    return "is not usable: \(error)"
                }
                return nil
            },
            copy: { $0.server.database = $1.server.database }),
        Setting(
            key: "db-password-file", type: .string, valueName: "PATH",
            help: "File (mode 0600) whose first line is the PostgreSQL password; else PARLEY_DB_PASSWORD. Never in the URL or argv.",
            read: { $0.databasePasswordFile ?? "none" },
            write: { settings, content in
                guard case .string(let value) = content, !value.isEmpty else { return "must be a file path" }
                settings.databasePasswordFile = value
                return nil
            },
            copy: { $0.databasePasswordFile = $1.databasePasswordFile }),
        .bool(
            "registration-open", flag: .clears("no-registration"), reloadable: true,
            help: "Whether unknown names register at first login (--no-registration: refuse them).",
            \.server.registrationOpen),
        Setting(
            key: "insecure-hash-cost", type: .int, valueName: "LN",
            help: "scrypt log2(N) for NEW hashes, for tests and benchmarks only (production: 17).",
            read: { String($0.server.hashParameters.ln) },
            write: { settings, content in
                let bounds = PasswordHasher.Parameters.lnBounds
                guard case .int(let ln) = content else { return "must be an integer" }
                guard bounds.contains(ln) else { return "must be \(bounds.lowerBound)-\(bounds.upperBound)" }
                settings.server.hashParameters = .init(ln: ln, r: 8, p: 1)
                return nil
            },
            copy: { $0.server.hashParameters = $1.server.hashParameters }),
        .int("threads", range: 1...64, help: "Event loop threads (default: one per core).", \.server.eventLoopThreads),
        .duration(
            "flush-interval-ms", unit: .milliseconds, range: 0...1000,
            help: "Under load, at most one flush pass per this many ms (0: every loop pass).", \.server.minFlushInterval),
        .int(
            "max-pending-logins", range: 1...1_000_000,
            help: "Logins waiting for a password hash beyond which new ones are refused.", \.server.maxPendingHashes),
        .int(
            "address-failure-limit", range: 1...1_000_000,
            help: "Failed logins from one address within 5 minutes before it is refused for 30 s, doubling up to 15 min.",
            \.server.addressBackoff.failures),
        Setting(
            key: "log-level", type: .string, reloadable: true, valueName: "LEVEL",
            help: "trace, debug, info, notice, warning, error or critical.",
            read: { $0.logLevel.rawValue },
            write: { settings, content in
                guard case .string(let name) = content, let level = Logger.Level(rawValue: name) else {
                    return "must be one of trace, debug, info, notice, warning, error, critical"
                }
                settings.logLevel = level
                return nil
            },
            copy: { $0.logLevel = $1.logLevel }),
        .duration(
            "login-timeout", range: 1...86_400,
            help: "Seconds a connection may take from connecting to logging in.", \.server.loginTimeout),
        .int(
            "max-connections-per-address", range: 1...1_000_000_000, reloadable: true,
            help: "Connections open at once from one source address (IPv6: one /64); more are refused at accept.",
            \.server.limits.maxConnectionsPerAddress),
        .int(
            "max-new-connections-per-minute", range: 1...1_000_000_000, reloadable: true,
            help: "New connections one source address may open per minute; more are refused at accept.",
            \.server.limits.maxNewConnectionsPerMinute),
        Setting(
            key: "commands-per-second", type: .int, reloadable: true, valueName: "N",
            help: "Commands one connection may send per second on average; more are refused (rate_limited).",
            read: { String(Int($0.server.limits.commandsPerSecond)) },
            write: { settings, content in
                guard case .int(let value) = content else { return "must be an integer" }
                guard (1...1_000_000_000).contains(value) else { return "must be 1-1000000000" }
                settings.server.limits.commandsPerSecond = Double(value)
                return nil
            },
            copy: { $0.server.limits.commandsPerSecond = $1.server.limits.commandsPerSecond }),
        .int(
            "command-burst", range: 1...1_000_000_000, reloadable: true,
            help: "Commands one connection may send at once above the average.", \.server.limits.commandBurst),
        .int(
            "flood-refusals", range: 1...1_000_000_000, reloadable: true,
            help: "rate_limited refusals within 10 s after which the user is logged out (flooding).",
            \.server.limits.floodRefusals),
        .int(
            "max-queued-per-recipient", range: 1...1_000_000_000, reloadable: true,
            help: "Offline messages kept for one recipient; more are refused (recipient_queue_full).",
            \.server.limits.maxQueuedPerRecipient),
        .int(
            "max-registrations-per-hour", range: 1...1_000_000_000, reloadable: true,
            help: "Accounts one source address may register per hour; more are refused (too_many_registrations).",
            \.server.limits.maxRegistrationsPerAddressPerHour),
        Setting(
            key: "metrics-listen", type: .string, valueName: "HOST:PORT",
            help: "Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP; off by default).",
            read: { $0.server.metricsListen.map { "\($0)" } ?? "off" },
            write: { settings, content in
                guard case .string(let value) = content else { return "must be HOST:PORT" }
                if value.isEmpty || value == "off" { settings.server.metricsListen = nil; return nil }
                guard let address = MetricsAddress(parsing: value) else { return "must be HOST:PORT, e.g. 127.0.0.1:9331" }
                settings.server.metricsListen = address
                return nil
            },
            copy: { $0.server.metricsListen = $1.server.metricsListen }),
        Setting(
            key: "node-name", type: .string, valueName: "NAME",
            help: "This server's name in a cluster (a PostgreSQL db); default: the host name.",
            read: { $0.server.nodeName ?? "<host name>" },
            write: { settings, content in
                guard case .string(let name) = content, !name.isEmpty, name.utf8.count <= 64,
                    !name.contains(where: { $0.isNewline || $0.asciiValue.map { $0 < 0x20 } == true })
                else { return "must be 1-64 characters on one line" }
                settings.server.nodeName = name
                return nil
            },
            copy: { $0.server.nodeName = $1.server.nodeName }),
        Setting(
            key: "cluster-lease-ms", type: .int, valueName: "MS",
            help: "How long a cluster node's lease lasts unrenewed: a dead node is noticed within about this long (short only in tests).",
            read: { String($0.server.clusterLease.components.seconds * 1000 + $0.server.clusterLease.components.attoseconds / 1_000_000_000_000_000) },
            write: { settings, content in
                guard case .int(let ms) = content, (500...600_000).contains(ms) else { return "must be 500-600000" }
                settings.server.clusterLease = .milliseconds(ms)
                return nil
            },
            copy: { $0.server.clusterLease = $1.server.clusterLease }),
        Setting(
            key: "admin-socket", type: .string, valueName: "PATH",
            help: "Unix socket (mode 0600) for `parley-server admin`; none turns it off (default: beside the database, <db>.admin.sock).",
            read: { $0.adminSocket ?? "<db>.admin.sock" },
            write: { settings, content in
                guard case .string(let value) = content else { return "must be a string" }
                settings.adminSocket = value.isEmpty ? "none" : value
                return nil
            },
            copy: { $0.adminSocket = $1.adminSocket }),
        .duration(
            "drain-timeout", range: 1...3600, reloadable: true,
            help: "Seconds a SIGTERM/SIGINT drain may take before the connections left are closed.", \.drainTimeout),
    ]

    /// Upper bound of the durations a person sets (larger ones would overflow nanoseconds).
    static let oneYear = 365 * 86_400

    /// The exercise's positional form, `parley-server PORT BLOCK_DURATION TIMEOUT`, as table keys.
    static let positionalKeys: [(name: String, key: String)] = [
        ("PORT", "port"), ("BLOCK_DURATION", "block-duration"), ("TIMEOUT", "timeout"),
    ]

    /// The setting with this file key.
    public static func setting(_ key: String) -> Setting? { table.first { $0.key == key } }

    /// Help text for `serve --help`, from the table.
    public static var helpText: String {
        let defaults = ServerSettings()
        var lines = [
            "Settings (precedence: flag > environment variable > --config FILE (JSON) > default):",
            "  --config FILE  JSON object of the keys below (env PARLEY_CONFIG); unknown keys are an error.",
        ]
        for setting in table {
            let flag: String
            switch setting.flag {
            case .value(let name): flag = "--\(name) \(setting.valueName)"
            case .clears(let name): flag = "--\(name)"
            case .none: flag = "(no flag: secret)"
            }
            let reload = setting.reloadable ? ", reloads on SIGHUP" : ""
            lines.append("  \(flag)")
            lines.append("      \(setting.help)")
            lines.append("      key \"\(setting.key)\", env \(setting.environmentVariable), default \(setting.describe(defaults))\(reload)")
        }
        return lines.joined(separator: "\n")
    }
}
