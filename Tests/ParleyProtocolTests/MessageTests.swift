import NIOCore
import Testing
@testable import ParleyProtocol
import ParleyProtocolNIO

private let fp = String(repeating: "ab", count: 32)

@Suite struct RequestTests {
    static let all: [Request] = [
        .login(username: "Alice", password: "pässword\n\"x\""),
        .login(username: "bob", password: "12345678", version: 2),
        .message(to: "bob", text: "hi\nthere \u{1} 😀"),
        .broadcast(text: "hello all"),
        .whoelse, .whoelsesince(seconds: 0), .whoelsesince(seconds: 3600),
        .block(user: "eve"), .unblock(user: "eve"), .logout,
        .ack(delivery: 42), .active,
        .startPrivate(user: "bob", fingerprint: fp),
        .privateAnswer(user: "alice", accept: true, port: 40000, fingerprint: fp),
        .privateAnswer(user: "alice", accept: false, port: nil, fingerprint: nil),
        .stopPrivate(user: "bob"),
    ]

    @Test(arguments: all, [nil, 7, -1] as [Int64?])
    func roundTrip(_ request: Request, id: Int64?) throws {
        var buffer = ByteBuffer()
        request.encode(id: id, into: &buffer)
        #expect(buffer.readableBytesView.last == UInt8(ascii: "\n"))
        #expect(buffer.readableBytesView.dropLast().contains(UInt8(ascii: "\n")) == false)
        let line = buffer.getSlice(at: buffer.readerIndex, length: buffer.readableBytes - 1)!
        let decoded = try Request.decode(from: line)
        #expect(decoded.id == id)
        #expect(decoded.request == request)
        #expect(String(buffer: line).hasPrefix(#"{"type":""# + request.typeName + "\""))
    }

    private func decode(_ s: String) throws(ProtocolError) -> (id: Int64?, request: Request) {
        try Request.decode(bytes: Array(s.utf8))
    }

    @Test func versionDefaultsToOneAndExtraFieldsAreIgnored() throws {
        let r = try decode(#"{"type":"login","username":"a","password":"b","future":{"x":[1]},"id":3}"#)
        #expect(r.id == 3)
        #expect(r.request == .login(username: "a", password: "b", version: 1))
    }

    @Test func missingFieldNamesItAndKeepsID() {
        #expect(throws: ProtocolError(.badFrame, "missing field 'text'", id: 9)) {
            try decode(#"{"type":"message","to":"bob","id":9}"#)
        }
        #expect(throws: ProtocolError(.badFrame, "expected a string for field 'to'", id: 1)) {
            try decode(#"{"type":"message","to":5,"text":"x","id":1}"#)
        }
        #expect(throws: ProtocolError(.badFrame, "missing field 'type'", id: nil)) { try decode("{}") }
    }

    @Test func invalidValues() {
        for s in [
            #"{"type":"whoelsesince","seconds":-1}"#, #"{"type":"whoelsesince","seconds":"5"}"#,
            #"{"type":"privateanswer","user":"a","accept":true,"port":70000}"#,
            #"{"type":"privateanswer","user":"a","accept":"yes"}"#,
            #"{"type":"startprivate","user":"a","fingerprint":"ABC"}"#,
            #"{"type":"ack","delivery":1.5}"#, #"{"type":"logout","id":"x"}"#, "[1]", "not json",
        ] {
            #expect(throws: ProtocolError.self, "\(s)") { try decode(s) }
            #expect((try? decode(s)) == nil)
            do { _ = try decode(s) } catch { #expect(error.code == .badFrame) }
        }
    }

    @Test func unknownTypeKeepsID() {
        #expect(throws: ProtocolError(.unknownType, "unknown request type 'dance'", id: 4)) {
            try decode(#"{"type":"dance","id":4}"#)
        }
    }

    @Test func nullOptionalsAreAbsent() throws {
        let r = try decode(#"{"type":"privateanswer","user":"a","accept":false,"port":null,"fingerprint":null,"id":null}"#)
        #expect(r.id == nil)
        #expect(r.request == .privateAnswer(user: "a", accept: false, port: nil, fingerprint: nil))
    }
}

@Suite struct ServerMessageTests {
    static let all: [ServerMessage] = [
        .hello(version: 1, server: "parley 0.1"),
        .reply(.ok(id: 1)), .reply(.ok(id: nil)),
        .reply(.ok(id: 2, .users(["alice", "Bob"]))), .reply(.ok(id: 3, .users([]))),
        .reply(.ok(id: 4, .login(username: "Alice", created: true))),
        .reply(.ok(id: 5, .login(username: "bob", created: false))),
        .reply(.ok(id: 6, .broadcast(unreachable: true))),
        .reply(.error(id: 7, .wrongPassword)), .reply(.error(id: nil, .badFrame, message: "missing field 'x'")),
        .message(from: "bob", text: "hi \"you\"\n"), .message(from: "bob", text: "old", delivery: 12, sent: 1_700_000_000_000),
        .broadcast(from: "carol", text: "hey"),
        .presence(user: "dave", online: true), .presence(user: "dave", online: false),
        .privateRequest(from: "bob"),
        .privateAccepted(user: "bob", host: "10.0.0.2", port: 5555, fingerprint: fp, linkID: "s1"),
        .privateDeclined(user: "bob"),
        .privateStarted(user: "bob", fingerprint: fp, linkID: "s1"),
        .privateStopped(user: "bob", reason: "peer closed"),
        .error(code: .frameTooLarge, message: ErrorCode.frameTooLarge.defaultMessage),
    ] + LogoutReason.allCases.map { ServerMessage.loggedOut(reason: $0) }

    @Test(arguments: all)
    func roundTrip(_ message: ServerMessage) throws {
        let frame = message.frame()
        #expect(frame.readableBytesView.last == UInt8(ascii: "\n"))
        #expect(try ServerMessage.decode(from: frame) == message)  // trailing newline is whitespace
    }

    @Test func exactBytesForBroadcast() {
        let frame = ServerMessage.broadcast(from: "a", text: "x\"y").frame()
        #expect(String(buffer: frame) == "{\"type\":\"broadcast\",\"from\":\"a\",\"text\":\"x\\\"y\"}\n")
        var twice = ByteBuffer()
        ServerMessage.presence(user: "a", online: true).encode(into: &twice)
        #expect(String(buffer: twice) == #"{"type":"presence","user":"a","online":true}"# + "\n")
    }

    @Test func replyFromProtocolError() throws {
        let reply = Reply.error(ProtocolError(.badFrame, "missing field 'to'", id: 3))
        #expect(reply == Reply(id: 3, outcome: .error(code: .badFrame, message: "missing field 'to'")))
    }

    @Test func unknownErrorCodeBecomesInternalAndMissingMessageDefaults() throws {
        let m = try ServerMessage.decode(bytes: Array(#"{"type":"reply","status":"error","code":"new_thing"}"#.utf8))
        #expect(m == .reply(.error(id: nil, .internal)))
        let e = try ServerMessage.decode(bytes: Array(#"{"type":"error","code":"rate_limited"}"#.utf8))
        #expect(e == .error(code: .rateLimited, message: "Error. Too many requests, slow down"))
    }

    @Test func rejectsBadServerFrames() {
        for s in [
            #"{"type":"reply","status":"maybe"}"#, #"{"type":"loggedout","reason":"bored"}"#,
            #"{"type":"presence","user":"a","online":1}"#, #"{"type":"reply","status":"ok","users":[1]}"#,
            #"{"type":"privateaccepted","user":"a","host":"h","fingerprint":"\#(fp)","session":"s"}"#,
        ] {
            #expect((try? ServerMessage.decode(bytes: Array(s.utf8))) == nil, "\(s)")
        }
        #expect(throws: ProtocolError(.unknownType, "unknown message type 'x'")) {
            try ServerMessage.decode(bytes: Array(#"{"type":"x"}"#.utf8))
        }
    }
}

@Suite struct ErrorCodeTests {
    @Test func codesAreStableSnakeCase() {
        #expect(ErrorCode.allCases.count == 31)
        #expect(ErrorCode(rawValue: "account_disabled") == .accountDisabled)
        for code in ErrorCode.allCases {
            #expect(code.rawValue.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || $0 == UInt8(ascii: "_") })
            #expect(!code.defaultMessage.isEmpty)
        }
        #expect(ErrorCode.wrongPassword.defaultMessage == "Invalid Password. Please try again")
        #expect(ErrorCode.accountLockedNow.defaultMessage == "Invalid Password. Your account has been blocked. Please try again later")
        #expect(ErrorCode.accountLocked.defaultMessage == "Your account is blocked due to multiple login failures. Please try again later")
        #expect(ErrorCode.unknownUser.defaultMessage == "Error. Invalid user")
        #expect(ErrorCode.recipientBlockedYou.defaultMessage == "Your message could not be delivered as the recipient has blocked you")
        #expect(ErrorCode.cannotBlockSelf.defaultMessage == "Error. Cannot block self")
        #expect(ErrorCode(rawValue: "account_locked_now") == .accountLockedNow)
        #expect(ErrorCode(rawValue: "too_many_requests") == .tooManyRequests)
        #expect(ErrorCode(rawValue: "rate_limited") == .rateLimited)
    }
}
