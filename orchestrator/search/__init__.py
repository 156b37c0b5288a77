"""Search algorithms, schedulers and the rules that tie them to the spec."""
