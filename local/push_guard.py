"""make dev serves the Pub/Sub-driven functions through this file: only a push may call them locally.

On Google Cloud the transcriber and the responder are private (OIDC). Locally they listen on
127.0.0.1, which every web page in the developer's browser can reach: a no-cors POST with a
text/plain body holding a structured CloudEvent is accepted by functions-framework and would make
the responder call the model (spending the key) and send WhatsApp messages. A Pub/Sub push always
has `Content-Type: application/json` and no `Origin`, which no other site's page can send without
a CORS preflight (that functions-framework never grants). The function itself runs unchanged:
GUARDED_SOURCE names its main.py, GUARDED_TARGET its entry point.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import flask
from werkzeug.exceptions import Forbidden


def refusal(headers: Any, mimetype: str) -> str:
    """Why a request is not a push from the emulator, or ""."""
    if headers.get("Origin") is not None:
        return "a web page's request (Origin header): only Pub/Sub pushes are served"
    if mimetype != "application/json":
        return "only Pub/Sub pushes (application/json) are served"
    return ""


def _load(path: str, target: str) -> Any:
    spec = importlib.util.spec_from_file_location("guarded_main", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, target)


_target = os.environ["GUARDED_TARGET"]
_function = _load(os.environ["GUARDED_SOURCE"], _target)


def _guarded(event: Any) -> Any:
    why = refusal(flask.request.headers, flask.request.mimetype)
    if why:
        raise Forbidden(why)
    return _function(event)


globals()[_target] = _guarded
