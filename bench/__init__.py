"""Benchmarks (`make bench`): ack latency, pipeline overhead, cold imports, Firestore ops, speech."""
