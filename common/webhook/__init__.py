"""The webhook function's work: Meta's handshake, signed POSTs parsed and published."""
