import Foundation
import Testing
@testable import ParleyPostgres

@Suite struct PostgresURLTests {
    @Test func tcpURLWithDefaults() throws {
        let url = try PostgresURL(parsing: "postgresql://parley@127.0.0.1:5433/chat")
        #expect(url.endpoint == .tcp(host: "127.0.0.1", port: 5433))
        #expect(url.user == "parley" && url.database == "chat")
        #expect(url.tls == .disable)  // loopback
        #expect(try PostgresURL(parsing: "postgres://u@db.example.com/chat").endpoint == .tcp(host: "db.example.com", port: 5432))
        #expect(try PostgresURL(parsing: "postgres://u@db.example.com/chat").tls == .require)  // remote: fail closed
        #expect(try PostgresURL(parsing: "postgres://u@db.example.com/chat?sslmode=disable").tls == .disable)
        #expect(try PostgresURL(parsing: "postgresql://u@[::1]:6000/x").endpoint == .tcp(host: "::1", port: 6000))
        #expect(try PostgresURL(parsing: "POSTGRESQL://u@localhost/x").tls == .disable)
    }

    @Test func socketForms() throws {
        let url = try PostgresURL(parsing: "postgresql:///chat?host=/var/run/postgresql&user=parley")
        #expect(url.endpoint == .unixSocket(directory: "/var/run/postgresql", port: 5432))
        #expect(url.user == "parley" && url.tls == .disable)
        let encoded = try PostgresURL(parsing: "postgresql://p%40x@/my%20db?host=%2Ftmp%2Fpg&port=7000")
        #expect(encoded.endpoint == .unixSocket(directory: "/tmp/pg", port: 7000))
        #expect(encoded.user == "p@x" && encoded.database == "my db")
        // With no user, libpq's default: whoever runs the program.
        #expect(try !PostgresURL(parsing: "postgresql:///chat?host=/tmp").user.isEmpty)
    }

    @Test func descriptionRoundTrips() throws {
        for text in ["postgresql://parley@127.0.0.1:5433/chat", "postgresql://a@/b?host=/tmp/x&port=1234",
                     "postgresql://a@db.example.com:5432/b?sslmode=require"] {
            let url = try PostgresURL(parsing: text)
            #expect(try PostgresURL(parsing: url.description) == url)
        }
    }

    @Test(arguments: [
        ("postgresql://u:secret@host/db", PostgresURLError.passwordInURL),
        ("postgresql://u@host/db?password=secret", .passwordInURL),
        ("postgresql://u@host", .missingDatabase),
        ("postgresql://u@host/", .missingDatabase),
        ("postgresql://u@host/a/b", .missingDatabase),
        ("postgresql://u@/db", .missingHost),
        ("postgresql://u@host:0/db", .badPort("0")),
        ("postgresql://u@host:99999/db", .badPort("99999")),
        ("postgresql://u@host:x/db", .badPort("x")),
        ("postgresql://u@host/db?sslmode=prefer", .badSSLMode("prefer")),
        ("postgresql://u@host/db?connect_timeout=3", .unknownParameter("connect_timeout")),
        ("postgresql://u@/db?host=/tmp&sslmode=require", .tlsOverSocket),
        ("postgresql://u@host/d%zz", .malformed("bad percent-encoding in the database name")),
        ("mysql://u@host/db", .notPostgres),
    ])
    func badURLsGetOneClearError(text: String, expected: PostgresURLError) {
        #expect(throws: expected) { try PostgresURL(parsing: text) }
        #expect(!expected.description.contains("\n"))
        #expect(!expected.description.contains("secret"))
    }

    @Test func onlyPostgresSchemesArePostgres() {
        #expect(PostgresURL.isPostgres("postgresql://x@y/z") && PostgresURL.isPostgres("postgres://x@y/z"))
        #expect(!PostgresURL.isPostgres("parley.sqlite") && !PostgresURL.isPostgres("/tmp/postgresql/db"))
    }
}

@Suite struct DatabasePasswordTests {
    @Test func fileMustBeOwnerOnlyAndWinsOverTheEnvironment() throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let path = dir.url.appendingPathComponent("pw").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data("s3cret\nignored\n".utf8),
                                               attributes: [.posixPermissions: 0o644]))
        #expect(throws: DatabasePasswordError.tooOpen(path, 0o644)) {
            try DatabasePassword.load(file: path, environment: [:])
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        let env = [DatabasePassword.environmentVariable: "fromenv"]
        #expect(try DatabasePassword.load(file: path, environment: env)?.value == "s3cret")
        #expect(try DatabasePassword.load(file: nil, environment: env)?.value == "fromenv")
        #expect(try DatabasePassword.load(file: nil, environment: [:]) == nil)
        #expect(throws: DatabasePasswordError.self) {
            try DatabasePassword.load(file: dir.url.appendingPathComponent("missing").path, environment: [:])
        }
        #expect(throws: DatabasePasswordError.notARegularFile(dir.url.path)) {
            try DatabasePassword.load(file: dir.url.path, environment: [:])
        }
    }

    @Test func thePasswordNeverPrints() {
        let password = DatabasePassword("s3cret")
        #expect("\(password)" == "<redacted>")
        #expect(String(reflecting: password) == "<redacted>")
    }

    @Test func aConnectFailureNamesTheURLButNotThePassword() async throws {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let url = try PostgresURL(parsing: "postgresql://parley@127.0.0.1:1/chat")
        do {
            _ = try await PostgresStore.open(url: url, password: DatabasePassword("s3cret-pw"))
            Issue.record("open succeeded against a closed port")
        } catch {
            let text = "\(error) \(String(reflecting: error))"
            #expect(text.contains("127.0.0.1:1"))
            #expect(!text.contains("s3cret-pw"))
        }
    }
}
