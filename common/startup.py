"""Cold start: the cyclic garbage collector pauses while an instance imports its SDKs and builds
its clients; what was built is then frozen, out of every later collection.

Importing functions-framework (Flask), Pub/Sub with gRPC and friends allocates hundreds of
thousands of long-lived objects, and each full collection on the way walks all of them again:
the imports took about half as long without it when the responder still loaded the SDKs.
Later, full passes over those objects stalled every request thread for tens of ms (the
webhook's p99). Each function's main.py imports this module before its SDKs and calls `done()`
once its modules (and clients) exist.
"""

from __future__ import annotations

import gc

gc.disable()


def done() -> None:
    """The modules and clients live as long as the instance: freeze them, then collect as usual.
    Called again, it freezes what was built since (a client made at the first request)."""
    gc.freeze()
    gc.enable()
