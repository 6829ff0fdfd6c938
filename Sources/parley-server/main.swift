print("parley-server: not yet")
