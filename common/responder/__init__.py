"""The responder function's work: one reply per message, exactly once, as a list of steps."""
