// libFuzzer entry for ParleyProtocol, which has no NIO (built by scripts/fuzz.sh with SwiftPM).
// Besides "no crash", it checks the codec invariant the server relies on when it re-encodes:
// anything that decodes must encode to bytes that decode to the same value.

import FuzzDriver
import ParleyProtocol

// Exported under libFuzzer's name too: its archive's main (should the linker pick it) calls this symbol.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)

    if let value = try? JSONReader.parse(bytes) {
        var out: [UInt8] = []
        out.writeJSON(value)
        guard let again = try? JSONReader.parse(out), again == value else {
            fatalError("JSON round trip changed \(value)")
        }
    }

    if let (id, request) = try? Request.decode(bytes: bytes) {
        var out: [UInt8] = []
        request.encode(id: id, to: &out)
        guard out.last == UInt8(ascii: "\n"), let again = try? Request.decode(bytes: Array(out.dropLast())),
              again.id == id, again.request == request
        else { fatalError("Request round trip changed \(request)") }
    }

    if let message = try? ServerMessage.decode(bytes: bytes) {
        var out: [UInt8] = []
        message.encode(to: &out)
        guard out.last == UInt8(ascii: "\n"), let again = try? ServerMessage.decode(bytes: Array(out.dropLast())),
              again == message
        else { fatalError("ServerMessage round trip changed \(message)") }
    }

    // Peer-to-peer frames, the safety-code exchange (commit/nonce/reveal) included.
    if let frame = try? PrivateFrame.decode(bytes: bytes) {
        switch frame {
        case .commit(let value), .nonce(let value), .reveal(let value):
            // The strict parser admits exactly 32 bytes with one spelling.
            guard value.bytes.count == SafetyValue.byteCount, SafetyValue(hex: value.hex) == value else {
                fatalError("SafetyValue accepted \(value)")
            }
        case .open, .welcome, .text, .bye: break
        }
        var out: [UInt8] = []
        frame.encode(to: &out)
        guard out.last == UInt8(ascii: "\n"), let again = try? out.dropLast().withUnsafeBytes({ try PrivateFrame.decode(bytes: $0) }),
              again == frame
        else { fatalError("PrivateFrame round trip changed \(frame)") }
    }

    _ = Validation.isValidUsername(String(decoding: bytes, as: UTF8.self))
    _ = Validation.canonicalUsername(String(decoding: bytes, as: UTF8.self))
    return 0
}

fuzzMain { fuzz($0, $1) }
