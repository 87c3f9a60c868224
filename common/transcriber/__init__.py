"""The transcriber function's work: a voice note's envelope becomes a transcript on the text topic."""
