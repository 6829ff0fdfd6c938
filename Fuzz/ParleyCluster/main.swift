// libFuzzer entry for the cluster's notification codec (built by scripts/fuzz.sh with SwiftPM).
// A payload arrives from another process through PostgreSQL; besides "no crash" it checks the
// invariant a node relies on when it forwards one: what decodes re-encodes to the same value.

import FuzzDriver
import ParleyCluster

// Exported under libFuzzer's name too: its archive's main (should the linker pick it) calls this symbol.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    // NOTIFY payloads are text: PostgreSQL hands over valid UTF-8 only.
    let payload = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    if let envelope = try? ClusterCodec.decode(payload) {
        let again = ClusterCodec.encode(envelope)
        guard let back = try? ClusterCodec.decode(again), back == envelope else {
            fatalError("cluster payload round trip changed \(envelope)")
        }
    }
    return 0
}

fuzzMain { fuzz($0, $1) }
