"""Voice replies offline: time to speak and upload 200 characters, and the bytes per second of speech.

The offline stand-in model (espeak-ng + ffmpeg, local/offline_model.py) in a thread on loopback,
our own Speech and GraphClient, and the Graph stand-in from the test suite taking the upload.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.fakes import FakeGraph

TEXT = (
    "Tomorrow looks dry and mild in the morning, with clouds building after lunch. Take an umbrella "
    "if you are out after five, because showers are likely until late in the evening. "
    "Sleep well, and see you."
)
RUNS = 5


def measure(graph: FakeGraph) -> dict[str, Any]:
    from common.ai.speech import Speech
    from common.meta.graph import GraphClient
    from local.offline_model import Handler

    assert len(TEXT) == 200, len(TEXT)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(
        OPENAI_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}/v1", OPENAI_API_KEY="bench"
    )
    speech, client = Speech(), GraphClient(token=graph.token, base=graph.url, version=graph.version)
    speak_ms, upload_ms = [], []
    try:
        for run in range(RUNS + 1):
            started = time.perf_counter()
            note = speech.voice_note(TEXT, time.monotonic() + 60)
            spoken = time.perf_counter()
            client.upload_media("106540352242922", note.data, "audio/ogg", "voice.ogg")
            if run:  # the first run warms up espeak-ng, ffmpeg and the connections
                speak_ms.append((spoken - started) * 1000)
                upload_ms.append((time.perf_counter() - spoken) * 1000)
    finally:
        server.shutdown()
        server.server_close()
    return {
        "chars": len(TEXT),
        "speak_ms": round(statistics.median(speak_ms), 1),
        "upload_ms": round(statistics.median(upload_ms), 1),
        "total_ms": round(statistics.median(s + u for s, u in zip(speak_ms, upload_ms, strict=True)), 1),
        "bytes": len(note.data),
        "seconds": round(note.seconds, 2),
        "bytes_per_second": round(len(note.data) / note.seconds),
        "reencoded": note.reencoded,
    }
