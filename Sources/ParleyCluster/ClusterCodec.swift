import ParleyProtocol

/// The notification payload format: one JSON object, `o` the origin node, `t` the kind, then the
/// kind's fields, nothing else. The parser is strict like the wire's (the JSON reader's rules, every
/// field required and typed, no unknown fields, names canonical, texts within the protocol's
/// limits), because a payload is input from another process: a node that misreads one must drop
/// it, never crash or act on half of it.
public enum ClusterCodec {
    /// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; larger ones go by reference.
    public static let maxNotificationBytes = 7999
    /// The largest payload accepted at all (a referenced one: a broadcast with a long skip list).
    public static let maxPayloadBytes = 4 * 1024 * 1024
    /// The longest list of names in one payload (skip lists, blocks).
    public static let maxNames = 200_000
    static let maxReasonBytes = 256
    static let maxHostBytes = 64

    /// The payload text of `envelope`.
    public static func encode(_ envelope: ClusterEnvelope) -> String {
        var fields: [String: JSONValue] = ["o": .string(envelope.origin.hex)]
        func put(_ type: String, _ more: [String: JSONValue]) {
            fields["t"] = .string(type)
            fields.merge(more) { a, _ in a }
        }
        switch envelope.message {
        case .online(let user, let display, let blocks):
            put("on", ["u": .string(user), "d": .string(display), "b": names(blocks)])
        case .offline(let user, let display, let blocks):
            put("off", ["u": .string(user), "d": .string(display), "b": names(blocks)])
        case .broadcast(let from, let display, let text, let skipping):
            put("bc", ["u": .string(from), "d": .string(display), "x": .string(text), "s": names(skipping)])
        case .direct(let delivery, let to, let display, let text, let sentAt):
            put("dm", ["i": .integer(delivery), "u": .string(to), "d": .string(display), "x": .string(text), "at": .integer(sentAt)])
        case .block(let blocker, let blocked, let active):
            put("blk", ["u": .string(blocker), "v": .string(blocked), "a": .bool(active)])
        case .privateLink(let to, let relay):
            fields["u"] = .string(to)
            switch relay {
            case .request(let from, let display, let fingerprint, let token):
                put("preq", ["f": .string(from), "d": .string(display), "fp": .string(fingerprint), "k": .integer(token)])
            case .accepted(let by, let display, let host, let port, let fingerprint, let linkID):
                put("pacc", ["f": .string(by), "d": .string(display), "h": .string(host), "p": .integer(Int64(port)),
                             "fp": .string(fingerprint), "l": .string(linkID)])
            case .declined(let by, let display):
                put("pdec", ["f": .string(by), "d": .string(display)])
            case .stopped(let by, let display, let reason):
                put("pstop", ["f": .string(by), "d": .string(display), "r": .string(reason)])
            case .filed(let by, let display, let token):
                put("pfil", ["f": .string(by), "d": .string(display), "k": .integer(token)])
            case .refused(let by, let display, let token, let code, let message):
                put("pref", ["f": .string(by), "d": .string(display), "k": .integer(token), "c": .string(code.rawValue),
                             "r": .string(message)])
            }
        case .nodeGone(let node):
            put("gone", ["n": .string(node.hex)])
        case .reference(let id):
            put("ref", ["i": .integer(id)])
        }
        var out: [UInt8] = []
        out.writeJSON(.object(fields))
        return String(decoding: out, as: UTF8.self)
    }

    private static func names(_ list: [String]) -> JSONValue { .array(list.map(JSONValue.string)) }

    /// Reads a payload; throws for anything this node did not write or would not write.
    /// Whether `payload` names `node` as its origin, without parsing it: a node hears its own
    /// cluster-channel notifications back and drops them, so this spares the full parse. The
    /// quoted key can only be the envelope's own `o`: quotes inside strings are escaped.
    public static func isOwn(_ payload: String, node: NodeID) -> Bool {
        payload.utf8.firstRange(of: Array("\"o\":\"\(node.hex)\"".utf8)) != nil
    }

    public static func decode(_ payload: String) throws(ClusterCodecError) -> ClusterEnvelope {
        let bytes = Array(payload.utf8)
        guard bytes.count <= maxPayloadBytes else { throw ClusterCodecError("payload of \(bytes.count) bytes") }
        let value: JSONValue
        do { value = try JSONReader.parse(bytes) } catch { throw ClusterCodecError("not JSON: \(error)") }
        guard let object = value.objectValue else { throw ClusterCodecError("not an object") }
        var fields = Fields(object)
        guard let origin = NodeID(try fields.string("o")) else { throw ClusterCodecError("bad origin") }
        let type = try fields.string("t")
        let message: ClusterMessage
        switch type {
        case "on", "off":
            let user = try fields.name("u"), display = try fields.display("d"), blocks = try fields.names("b")
            message = type == "on"
                ? .online(user: user, displayName: display, blocks: blocks)
                : .offline(user: user, displayName: display, blocks: blocks)
        case "bc":
            message = .broadcast(from: try fields.name("u"), displayName: try fields.display("d"),
                                 text: try fields.text("x"), skipping: try fields.names("s"))
        case "dm":
            message = .direct(delivery: try fields.integer("i", in: 1...Int64.max), to: try fields.name("u"),
                              fromDisplayName: try fields.display("d"), text: try fields.text("x"),
                              sentAtMillis: try fields.integer("at", in: 0...Int64.max))
        case "blk":
            message = .block(blocker: try fields.name("u"), blocked: try fields.name("v"), active: try fields.bool("a"))
        case "preq", "pacc", "pdec", "pstop", "pfil", "pref":
            message = .privateLink(to: try fields.name("u"), try privateRelay(type, &fields))
        case "gone":
            guard let node = NodeID(try fields.string("n")) else { throw ClusterCodecError("bad node id") }
            message = .nodeGone(node)
        case "ref":
            message = .reference(try fields.integer("i", in: 1...Int64.max))
        default:
            throw ClusterCodecError("unknown type")
        }
        guard fields.remaining.isEmpty else { throw ClusterCodecError("unexpected fields \(fields.remaining.sorted())") }
        return ClusterEnvelope(origin: origin, message: message)
    }

    private static func privateRelay(_ type: String, _ fields: inout Fields) throws(ClusterCodecError) -> PrivateRelay {
        let by = try fields.name("f"), display = try fields.display("d")
        switch type {
        case "preq":
            return .request(from: by, displayName: display, fingerprint: try fields.fingerprint("fp"),
                            token: try fields.integer("k", in: 0...Int64.max))
        case "pacc":
            let host = try fields.string("h")
            guard !host.isEmpty, host.utf8.count <= maxHostBytes,
                host.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") || isHex($0) })
            else { throw ClusterCodecError("bad host") }
            let port = Int(try fields.integer("p", in: 1...65535))
            let fingerprint = try fields.fingerprint("fp")
            let linkID = try fields.string("l")
            guard linkID.utf8.count == 32, linkID.utf8.allSatisfy(isHex) else { throw ClusterCodecError("bad link id") }
            return .accepted(by: by, displayName: display, host: host, port: port, fingerprint: fingerprint, linkID: linkID)
        case "pdec":
            return .declined(by: by, displayName: display)
        case "pfil":
            return .filed(by: by, displayName: display, token: try fields.integer("k", in: 0...Int64.max))
        case "pref":
            let token = try fields.integer("k", in: 0...Int64.max)
            guard let code = ErrorCode(rawValue: try fields.string("c")) else { throw ClusterCodecError("unknown error code") }
            let message = try fields.string("r")
            guard message.utf8.count <= maxReasonBytes else { throw ClusterCodecError("message too long") }
            return .refused(by: by, displayName: display, token: token, code: code, message: message)
        default:
            let reason = try fields.string("r")
            guard reason.utf8.count <= maxReasonBytes else { throw ClusterCodecError("reason too long") }
            return .stopped(by: by, displayName: display, reason: reason)
        }
    }

    static func isHex(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) || (0x41...0x46).contains(byte)
    }
}

/// The members of one payload object, each taken once, typed and checked; what is left over is
/// an error.
private struct Fields {
    private var members: [String: JSONValue]
    init(_ members: [String: JSONValue]) { self.members = members }

    var remaining: [String] { Array(members.keys) }

    mutating func take(_ key: String) throws(ClusterCodecError) -> JSONValue {
        guard let value = members.removeValue(forKey: key) else { throw ClusterCodecError("missing \(key)") }
        return value
    }

    mutating func string(_ key: String) throws(ClusterCodecError) -> String {
        guard let s = try take(key).stringValue else { throw ClusterCodecError("\(key) is not a string") }
        return s
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int64>) throws(ClusterCodecError) -> Int64 {
        guard let i = try take(key).integerValue, range.contains(i) else { throw ClusterCodecError("bad \(key)") }
        return i
    }

    mutating func bool(_ key: String) throws(ClusterCodecError) -> Bool {
        guard let b = try take(key).boolValue else { throw ClusterCodecError("\(key) is not a bool") }
        return b
    }

    /// A canonical user name (the identity every table and entry is keyed by).
    mutating func name(_ key: String) throws(ClusterCodecError) -> String {
        let s = try string(key)
        guard Validation.isValidUsername(s), Validation.canonicalUsername(s) == s else { throw ClusterCodecError("bad name in \(key)") }
        return s
    }

    /// A display name: a valid user name in any case.
    mutating func display(_ key: String) throws(ClusterCodecError) -> String {
        let s = try string(key)
        guard Validation.isValidUsername(s) else { throw ClusterCodecError("bad display name in \(key)") }
        return s
    }

    mutating func text(_ key: String) throws(ClusterCodecError) -> String {
        let s = try string(key)
        guard Validation.isValidText(s) else { throw ClusterCodecError("bad text in \(key)") }
        return s
    }

    mutating func fingerprint(_ key: String) throws(ClusterCodecError) -> String {
        let s = try string(key)
        guard Validation.isValidFingerprint(s) else { throw ClusterCodecError("bad fingerprint in \(key)") }
        return s
    }

    mutating func names(_ key: String) throws(ClusterCodecError) -> [String] {
        guard case .array(let list) = try take(key), list.count <= ClusterCodec.maxNames else {
            throw ClusterCodecError("\(key) is not a list of names")
        }
        var out: [String] = []
        out.reserveCapacity(list.count)
        for element in list {
            guard let s = element.stringValue, Validation.isValidUsername(s), Validation.canonicalUsername(s) == s else {
                throw ClusterCodecError("bad name in \(key)")
            }
            out.append(s)
        }
        return out
    }
}
