// The two ways a fuzz executable runs: under libFuzzer (built with -sanitize=fuzzer -DFUZZING by
// scripts/fuzz.sh), or, in the ordinary build, replaying the files named on its command line, e.g.
// a crash artifact, so a finding can be rerun under the debugger without the fuzzer.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One fuzz iteration over raw bytes, as libFuzzer calls it; returns 0.
public typealias FuzzEntry = @convention(c) (UnsafePointer<UInt8>, Int) -> Int32

#if FUZZING
// libFuzzer's own main would need the executable to have none, which SwiftPM does not allow.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ entry: FuzzEntry
) -> Int32
#endif

/// Runs `entry` under libFuzzer (fuzzing build) or over each file argument (ordinary build); never returns.
public func fuzzMain(_ entry: FuzzEntry) -> Never {
    #if FUZZING
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, entry))
    #else
    for path in CommandLine.arguments.dropFirst() {
        guard let file = fopen(path, "rb") else { print("cannot open \(path)"); exit(1) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        fclose(file)
        bytes.append(0)  // a valid pointer even for an empty file
        _ = bytes.withUnsafeBufferPointer { entry($0.baseAddress!, $0.count - 1) }
    }
    exit(0)
    #endif
}
