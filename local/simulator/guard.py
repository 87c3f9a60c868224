"""Only the developer's own browser and tools may use the simulator: it can spend a real OpenAI key.

Any web page can POST to http://127.0.0.1:8090 (a no-cors form needs no permission), and a page
on a rebinding domain can even read the answers. So every request must name a loopback Host,
a request from a page must come from the simulator's own origin, every state-changing call of
the JSON API must carry the per-run token (X-Simulator-Token: the chat page gets it inside the
page, the CLI from GET /api/session, which only the same origin can read), and bodies are capped.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, jsonify, request

TOKEN_HEADER = "X-Simulator-Token"  # noqa: S105 (a header name)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SMALL_BODY_BYTES = 256 * 1024  # JSON calls: the chat page's, the CLI's, the functions' Graph calls


def host_name(host: str) -> str:
    """`127.0.0.1:8090` -> `127.0.0.1`; `[::1]:8090` -> `[::1]`; lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def refusal(
    request_host: str, origin: str | None, method: str, path: str, token: str | None, expected: str
) -> str:
    """Why this request is refused, or "" to serve it (plain values: easy to read, easy to test)."""
    if host_name(request_host) not in LOOPBACK:
        return "the simulator answers only to a loopback Host (127.0.0.1, localhost, [::1])"
    if origin is not None and origin.rstrip("/").lower() != f"http://{request_host.strip().lower()}":
        return "cross-origin requests are refused: open the chat page the simulator serves"
    needs_token = method not in SAFE_METHODS and path.startswith("/api/")
    if needs_token and not hmac.compare_digest((token or "").encode(), expected.encode()):
        return f"the {TOKEN_HEADER} header is missing or wrong (the page and the CLI send it)"
    return ""


def install(app: Flask, token: str, max_upload_bytes: int) -> None:
    """Check every request before its route runs; cap bodies (uploads may be larger than JSON)."""
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes  # also bounds chunked bodies as they are read

    @app.before_request
    def check() -> tuple[Response, int] | None:
        why = refusal(
            request.host,
            request.headers.get("Origin"),
            request.method,
            request.path,
            request.headers.get(TOKEN_HEADER),
            token,
        )
        if why:
            return jsonify({"error": why}), 403
        limit = max_upload_bytes if request.mimetype == "multipart/form-data" else SMALL_BODY_BYTES
        if (request.content_length or 0) > limit:
            return jsonify({"error": f"the body is over {limit} bytes"}), 413
        return None

    @app.after_request
    def harden(response: Response) -> Response:
        response.headers["X-Frame-Options"] = "DENY"  # no page may frame the chat and click in it
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
