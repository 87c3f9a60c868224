"""Helpers for the test suite: Pub/Sub plumbing and signed webhook requests."""
