"""The guardrails' rules: who may write, stale messages, echoes, the daily voice quota."""
