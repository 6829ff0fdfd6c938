import ArgumentParser
import Foundation
import ParleyCrypto
import ParleyProtocol
import ParleyStore

struct ImportCredentials: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-credentials",
        abstract: "Import the original exercise's credentials.txt (one 'username password' per line), hashing each.")

    @Argument(help: "The credentials file.")
    var file: String

    @OptionGroup var database: DatabaseOptions

    @Option(name: .customLong("insecure-hash-cost"), help: ArgumentHelp("scrypt log2(N), tests only.", valueName: "LN"))
    var hashCost: Int?

    func run() async throws {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("cannot read \(file)")
        }
        let hasher = PasswordHasher(parameters: hashCost.map { .init(ln: $0, r: 8, p: 1) } ?? .production)
        let store = try await database.openStore()
        var imported = 0, skipped = 0, invalid = 0
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2, Validation.isValidUsername(parts[0]), Validation.isValidPassword(parts[1]) else {
                printError("line \(number + 1): not 'username password' with a valid name and an 8-1024 byte password; skipped")
                invalid += 1
                continue
            }
            let hash = try hasher.hash(password: parts[1])
            if try await store.createAccount(name: Validation.canonicalUsername(parts[0]), displayName: parts[0], passwordHash: hash) {
                imported += 1
            } else {
                printError("line \(number + 1): \(parts[0]) already exists; skipped")
                skipped += 1
            }
        }
        try await store.close()
        print("imported \(imported) accounts, \(skipped) already existed, \(invalid) invalid lines")
        if invalid > 0 { throw ExitCode(65) }
    }
}

struct UserAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Manage accounts: add, passwd, list, unlock. Passwords are read from the terminal or stdin, never argv.",
        subcommands: [Add.self, Passwd.self, List.self, Unlock.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an account.")
        @Argument var name: String
        @OptionGroup var database: DatabaseOptions
        func run() async throws {
            guard Validation.isValidUsername(name) else { throw ValidationError("invalid username (1-32 of A-Z a-z 0-9 _ - ., starting with a letter or digit)") }
            let password = try readNewPassword()
            let store = try await database.openStore()
            defer { Task { try? await store.close() } }
            let hash = try PasswordHasher().hash(password: password)
            guard try await store.createAccount(name: Validation.canonicalUsername(name), displayName: name, passwordHash: hash) else {
                throw ValidationError("\(name) already exists")
            }
            try await store.close()
            print("created \(name)")
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a new password.")
        @Argument var name: String
        @OptionGroup var database: DatabaseOptions
        func run() async throws {
            let password = try readNewPassword()
            let store = try await database.openStore()
            let hash = try PasswordHasher().hash(password: password)
            let changed = try await store.updatePasswordHash(name: Validation.canonicalUsername(name), passwordHash: hash)
            try await store.close()
            guard changed else { throw ValidationError("no account named \(name)") }
            print("password changed for \(name)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List accounts.")
        @OptionGroup var database: DatabaseOptions
        func run() async throws {
            let store = try await database.openStore()
            let accounts = try await store.listAccounts()
            try await store.close()
            let now = Date()
            for account in accounts {
                let lock = account.isLocked(at: now) ? "  locked until \(account.lockedUntil!)" : ""
                print("\(account.displayName)\(lock)")
            }
        }
    }

    struct Unlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clear a lock left by wrong passwords.")
        @Argument var name: String
        @OptionGroup var database: DatabaseOptions
        func run() async throws {
            let store = try await database.openStore()
            let done = try await store.unlock(name: Validation.canonicalUsername(name))
            try await store.close()
            guard done else { throw ValidationError("no account named \(name)") }
            print("unlocked \(name)")
        }
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Reads a password without echo from a terminal, or as one line of stdin otherwise.
func readNewPassword() throws -> String {
    let interactive = isatty(STDIN_FILENO) == 1
    if interactive { FileHandle.standardError.write(Data("Password: ".utf8)) }
    var saved = termios()
    if interactive {
        tcgetattr(STDIN_FILENO, &saved)
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
    }
    let line = readLine(strippingNewline: true)
    if interactive {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
        FileHandle.standardError.write(Data("\n".utf8))
    }
    guard let password = line, Validation.isValidPassword(password) else {
        throw ValidationError("password must be 8 to 1024 bytes")
    }
    return password
}
