"""Firestore: exactly-once claims, the per-user conversation, daily counters and pauses."""
