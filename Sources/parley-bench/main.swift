// parley-bench entry point; the subcommands live in Commands.swift, the engine in Engine.swift.
Bench.main()
