"""The message bus: the envelope that travels through Pub/Sub, its CloudEvent, publishing it."""
