"""Answers from the business's own documents: sync a folder into Firestore, retrieve passages per turn."""
