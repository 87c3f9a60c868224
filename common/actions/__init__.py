"""The business's actions: its HTTP endpoints as the model's tools, each call made once; the handoff."""
