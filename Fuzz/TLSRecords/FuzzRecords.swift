// libFuzzer entry for the server's TLS 1.3 record layer (built by scripts/fuzz.sh with OpenSSL
// alone). Two paths: the input as raw bytes off the network (framing, and forgeries that must
// never authenticate), and the input sealed as a record's inner plaintext with the peer's real
// key, so that the parsing after decryption (padding, content types, alerts, KeyUpdate) is
// reached too, with its result checked against what was sealed.

private let clientSecret = [UInt8](repeating: 7, count: 48)
private let serverSecret = [UInt8](repeating: 9, count: 48)

private func suite(_ selector: UInt8) -> RecordSuite {
    [RecordSuite.aes128GCM, .aes256GCM, .chacha20Poly1305][Int(selector % 3)]
}

private func keys(_ suite: RecordSuite) -> (reader: TLS13Records, writer: TLS13Records) {
    let c = Array(clientSecret.prefix(suite.hashLength))
    let s = Array(serverSecret.prefix(suite.hashLength))
    return (TLS13Records(suite: suite, readSecret: c, writeSecret: s)!,
            TLS13Records(suite: suite, readSecret: s, writeSecret: c)!)
}

/// Opens records from `stream` until it runs out or one fails; returns the data opened.
private func drain(_ reader: inout TLS13Records, _ stream: UnsafeRawBufferPointer) -> (data: Int, last: TLS13Records.Opened?) {
    var offset = 0
    var data = 0
    while offset < stream.count {
        let rest = UnsafeRawBufferPointer(rebasing: stream[offset...])
        guard case .complete(let length) = TLS13Records.inspect(rest) else { return (data, nil) }
        precondition(length <= rest.count && length <= TLS13Records.headerLength + TLS13Records.maxCiphertext)
        var out = [UInt8](repeating: 0, count: length)
        let opened = out.withUnsafeMutableBytes {
            reader.open(record: UnsafeRawBufferPointer(rebasing: rest[0..<length]), into: $0)
        }
        offset += length
        switch opened {
        case .data(let n):
            precondition(n < length)
            data += n
        case .nothing: continue
        default: return (data, opened)
        }
    }
    return (data, nil)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let chosen = suite(bytes[0])

    // Off the wire: nothing the fuzzer writes can carry the peer's tag.
    var (reader, writer) = keys(chosen)
    let raw = drain(&reader, UnsafeRawBufferPointer(rebasing: bytes[1...]))
    precondition(raw.data == 0, "unauthenticated bytes were accepted as application data")

    // Sealed with the real key: bytes[1] is the inner content type, the rest the content.
    guard size > 1 else { return 0 }
    (reader, writer) = keys(chosen)
    let type = bytes[1]
    let content = UnsafeRawBufferPointer(rebasing: bytes[2...])
    guard content.count + 1 <= TLS13Records.maxPlaintext + 256 - RecordSuite.tagLength else { return 0 }
    var record = [UInt8](repeating: 0, count: content.count + TLS13Records.overhead)
    let n = record.withUnsafeMutableBytes { writer.sealRecord(type: type, content, into: $0, at: 0) }
    precondition(n == record.count)
    let opened = record.withUnsafeBytes { drain(&reader, $0) }
    // Inner plaintext = content + type byte; too long is an overflow whatever it holds.
    if content.count + 1 > TLS13Records.maxPlaintext + 1 {
        precondition(opened.last == .failed(.recordOverflow, "record plaintext exceeds 2^14 bytes"))
    } else if type == 23 {
        precondition(opened.data == content.count && (content.count > 0 || opened.last == nil))
    } else if type == 21 {
        precondition(opened.data == 0 && (content.count == 2 || opened.last == .failed(.decodeError, "malformed alert")))
    } else if type == 22 {
        // Only one well-formed KeyUpdate, alone in its record, is accepted.
        let c = Array(content)
        let valid = c.count == 5 && c[0] == 24 && c[1] == 0 && c[2] == 0 && c[3] == 1 && c[4] <= 1
        precondition(opened.data == 0 && (opened.last == nil) == valid)
        precondition(reader.keyUpdateOwed == (valid && c[4] == 1))
    } else if type != 0 {
        precondition(opened.data == 0)
    }
    return 0
}
