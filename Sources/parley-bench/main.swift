// parley-bench entry point; the subcommands are listed in Commands.swift (one file per scenario).
Bench.main()
