// libFuzzer entry for the terminal client's command parser (built by scripts/fuzz.sh with SwiftPM).
// Typed lines are untrusted too: pasted text reaches the parser and the suggestion search.
import ParleyCommands
import FuzzDriver
import ParleyProtocol

// Exported under libFuzzer's name too: its archive's main (should the linker pick it) calls this symbol.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    // The command parser sees Strings, so only valid UTF-8 reaches it in the real client.
    let line = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    switch UserCommand.parse(line) {
    case .success: break
    case .failure(let error): _ = error.message
    }
    _ = Validation.isValidUsername(line)
    _ = Validation.canonicalUsername(line)
    return 0
}

fuzzMain { fuzz($0, $1) }
