import ParleyCluster
import Testing

private let origin = NodeID("0123456789abcdef0123456789abcdef")!
private let other = NodeID("fedcba9876543210fedcba9876543210")!
private let fingerprint = String(repeating: "ab", count: 32)

private func roundTrip(_ message: ClusterMessage) throws -> ClusterMessage {
    try ClusterCodec.decode(ClusterCodec.encode(ClusterEnvelope(origin: origin, message: message))).message
}

private func refused(_ payload: String) -> Bool {
    (try? ClusterCodec.decode(payload)) == nil
}

@Suite("cluster notification payloads (strict codec)")
struct ClusterCodecTests {
    @Test(arguments: [
        ClusterMessage.online(user: "alice", displayName: "Alice", blocks: ["bob", "carol"]),
        .offline(user: "alice", displayName: "Alice", blocks: []),
        .broadcast(from: "alice", displayName: "Alice", text: "hi \"all\"\n\u{1}é😀", skipping: ["bob"]),
        .direct(delivery: 42, to: "bob", fromDisplayName: "Alice", text: "hello", sentAtMillis: 1_700_000_000_000),
        .block(blocker: "alice", blocked: "bob", active: true),
        .block(blocker: "alice", blocked: "bob", active: false),
        .privateLink(to: "bob", .request(from: "alice", displayName: "Alice", fingerprint: fingerprint, token: 7)),
        .privateLink(to: "alice", .accepted(by: "bob", displayName: "Bob", host: "127.0.0.2", port: 40000,
                                            fingerprint: fingerprint, linkID: String(repeating: "0f", count: 16))),
        .privateLink(to: "alice", .accepted(by: "bob", displayName: "Bob", host: "::1", port: 1,
                                            fingerprint: fingerprint, linkID: String(repeating: "0f", count: 16))),
        .privateLink(to: "alice", .declined(by: "bob", displayName: "Bob")),
        .privateLink(to: "alice", .stopped(by: "bob", displayName: "Bob", reason: "Bob logged out")),
        .privateLink(to: "alice", .filed(by: "bob", displayName: "Bob", token: 12)),
        .privateLink(to: "alice", .refused(by: "bob", displayName: "Bob", token: 12, code: .tooManyRequests,
                                           message: "Error. Bob has too many private requests waiting; try again later")),
        .nodeGone(other),
        .reference(9),
    ])
    func everyMessageSurvivesARoundTrip(_ message: ClusterMessage) throws {
        #expect(try roundTrip(message) == message)
    }

    @Test func ownPayloadsAreRecognisedWithoutParsingAndTextCannotForgeAnOrigin() throws {
        let mine = ClusterCodec.encode(ClusterEnvelope(origin: origin, message: .nodeGone(other)))
        #expect(ClusterCodec.isOwn(mine, node: origin))
        #expect(!ClusterCodec.isOwn(mine, node: other), "the node it names is not the origin")
        // A text quoting the origin's key is escaped in the payload, so it cannot pass for it.
        let forged = ClusterCodec.encode(ClusterEnvelope(
            origin: other, message: .broadcast(from: "eve", displayName: "Eve", text: "\"o\":\"\(origin.hex)\"", skipping: [])))
        #expect(!ClusterCodec.isOwn(forged, node: origin))
        #expect(ClusterCodec.isOwn(forged, node: other))
    }

    @Test func theOriginIsKeptAndSmallPayloadsFitANotification() throws {
        let payload = ClusterCodec.encode(ClusterEnvelope(origin: origin, message: .block(blocker: "a", blocked: "b", active: true)))
        #expect(try ClusterCodec.decode(payload).origin == origin)
        #expect(payload.utf8.count < 200)
        let long = ClusterCodec.encode(ClusterEnvelope(
            origin: origin, message: .broadcast(from: "a", displayName: "A", text: String(repeating: "\u{1}", count: 4096), skipping: [])))
        #expect(long.utf8.count > ClusterCodec.maxNotificationBytes, "escaped control characters: this one goes by reference")
        #expect(try ClusterCodec.decode(long).message == .broadcast(from: "a", displayName: "A", text: String(repeating: "\u{1}", count: 4096), skipping: []))
    }

    @Test func malformedAndUnexpectedPayloadsAreRefused() {
        let o = origin.hex
        #expect(refused(""))
        #expect(refused("[]"))
        #expect(refused("{\"o\":\"\(o)\"}"), "no type")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"nope\"}"), "unknown type")
        #expect(refused("{\"o\":\"xyz\",\"t\":\"ref\",\"i\":1}"), "bad origin")
        #expect(refused("{\"o\":\"\(o.uppercased())\",\"t\":\"ref\",\"i\":1}"), "origin must be lowercase")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"ref\",\"i\":0}"), "ids start at 1")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"ref\",\"i\":1,\"x\":1}"), "unknown field")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"ref\",\"i\":\"1\"}"), "wrong type")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"ref\",\"i\":1,\"i\":2}"), "duplicate key")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"ref\",\"i\":1} x"), "trailing garbage")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"blk\",\"u\":\"Alice\",\"v\":\"bob\",\"a\":true}"), "names must be canonical")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"blk\",\"u\":\"al ice\",\"v\":\"bob\",\"a\":true}"), "invalid name")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"bc\",\"u\":\"a\",\"d\":\"A\",\"x\":\"\",\"s\":[]}"), "empty text")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"bc\",\"u\":\"a\",\"d\":\"A\",\"x\":\"\(String(repeating: "y", count: 4097))\",\"s\":[]}"), "text too long")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"bc\",\"u\":\"a\",\"d\":\"A\",\"x\":\"t\",\"s\":[1]}"), "skip list of non-names")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"pacc\",\"u\":\"a\",\"f\":\"b\",\"d\":\"B\",\"h\":\"1.2.3.4\",\"p\":0,\"fp\":\"\(fingerprint)\",\"l\":\"\(String(repeating: "0", count: 32))\"}"), "port 0")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"pacc\",\"u\":\"a\",\"f\":\"b\",\"d\":\"B\",\"h\":\"evil host\",\"p\":1,\"fp\":\"\(fingerprint)\",\"l\":\"\(String(repeating: "0", count: 32))\"}"), "host")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"preq\",\"u\":\"a\",\"f\":\"b\",\"d\":\"B\",\"fp\":\"short\",\"k\":1}"), "fingerprint")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"pstop\",\"u\":\"a\",\"f\":\"b\",\"d\":\"B\",\"r\":\"\(String(repeating: "r", count: 300))\"}"), "reason too long")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"dm\",\"i\":1,\"u\":\"a\",\"d\":\"A\",\"x\":\"t\",\"at\":-1}"), "negative time")
        #expect(refused("{\"o\":\"\(o)\",\"t\":\"ref\",\"i\":1.5}"), "no floats")
    }

    @Test func everyPrefixOfAValidPayloadIsRefusedWithoutCrashing() {
        let payload = ClusterCodec.encode(ClusterEnvelope(
            origin: origin, message: .privateLink(to: "bob", .request(from: "alice", displayName: "Alice", fingerprint: fingerprint, token: 3))))
        let bytes = Array(payload.utf8)
        for end in 0..<bytes.count {
            #expect(refused(String(decoding: bytes[..<end], as: UTF8.self)))
        }
        #expect(!refused(payload))
    }

    @Test func nodeIDsAreThirtyTwoLowercaseHexDigits() {
        #expect(NodeID(String(repeating: "a", count: 32)) != nil)
        #expect(NodeID(String(repeating: "a", count: 31)) == nil)
        #expect(NodeID(String(repeating: "A", count: 32)) == nil)
        #expect(NodeID(String(repeating: "g", count: 32)) == nil)
    }
}
