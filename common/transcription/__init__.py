"""Voice note → text for the transcriber function: media fetch, decoding, and the speech backends.

`Transcriber.run(envelope)` returns the envelope to publish (a transcript or a transcription
failure) and raises only what a redelivery can fix. Heavy libraries (speech_recognition, pocketsphinx,
numpy) are imported inside the code path that needs them; ffmpeg runs as a child process.
"""

from common.transcription.errors import Failed, Unavailable
from common.transcription.transcriber import Transcriber

__all__ = ["Failed", "Transcriber", "Unavailable"]
