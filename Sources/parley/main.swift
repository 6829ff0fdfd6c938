print("parley: not yet")
