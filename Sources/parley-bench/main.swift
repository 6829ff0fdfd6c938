print("parley-bench: in progress")
