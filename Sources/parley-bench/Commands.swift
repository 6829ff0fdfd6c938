// parley-bench: load generator and measurements for Parley (see docs/BENCH-TOOL.md).
//
// One process, ONE event loop thread for all connections (the machine has 2 cores shared with the
// server). Frames are scanned by bytes; no Foundation JSON anywhere near the hot paths.

import ArgumentParser

// One file per scenario: ScenarioTraffic (fanout, direct, login-burst), ScenarioIdle,
// ScenarioHandshake, ScenarioOffline, ScenarioPrivate(+Run). Shared: Options, Run, Support; the
// connection engine: BenchClient, Engine, BenchHandler.

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-bench",
        abstract: "Load generator and measurements for parley-server (see docs/BENCH-TOOL.md).",
        subcommands: [Fanout.self, Direct.self, Idle.self, Handshake.self, LoginBurst.self, Offline.self, Private.self])
}
