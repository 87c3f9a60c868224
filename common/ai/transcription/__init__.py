"""Voice note → text: media fetch, decoding, and the speech backends.

The transcriber function's steps (common/transcriber/handler.py) use these parts. Heavy
libraries (speech_recognition, pocketsphinx, numpy) are imported inside the code path that
needs them; ffmpeg runs as a child process.
"""

from common.ai.transcription.errors import Failed, Unavailable

__all__ = ["Failed", "Unavailable"]
