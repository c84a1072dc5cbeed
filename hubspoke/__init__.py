"""Hub-and-spoke dispensing: the rules and data shapes, free of hooks, servers and stores."""
