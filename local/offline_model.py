"""An offline stand-in for an OpenAI chat model, so `make dev` works with no key and no network.

OpenAI-compatible (`POST /v1/chat/completions`, also streamed; `POST /v1/audio/speech`, spoken
by espeak-ng; `POST /v1/embeddings`, a hashed bag of words: local/offline_embeddings.py;
`GET /v1/models`). It does not think: it echoes the user's last words, describes the images and
files it was sent (format, size, pixels or pages: local/offline_media.py), counts the turns it
was given (which shows that history and /reset work), quotes the first passage of the business's
documents it was given (or says it was given none), calls an action when the user's words name
one (local/offline_tools.py), and every answer starts with LABEL so nobody
mistakes it for a model.
Run by `make dev` as `python -m local.offline_model` on OFFLINE_MODEL_PORT.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from common import config, log
from common.knowledge import grounding
from local import offline_embeddings, offline_media, offline_speech, offline_tools, serving

LABEL = "[offline stand-in model]"
MODEL = "offline-stand-in"
ECHO_LIMIT = 600  # characters of the user's words repeated back
QUOTE_LIMIT = 400  # characters of a passage quoted


def words(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def answer(messages: list[dict[str, Any]]) -> str:
    """The labelled echo: the last user turn, and how many user turns the prompt held."""
    turns = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    users = [words(content) for content in turns]
    said = " ".join((users[-1] if users else "").split())
    if len(said) > ECHO_LIMIT:
        said = said[: ECHO_LIMIT - 1] + "…"
    seen = offline_media.describe(turns[-1]) if turns else []
    received = f" I received {' and '.join(seen)}." if seen else ""
    return (
        f"{LABEL} You said: “{said}”.{received} That is message {len(users)} of this conversation. "
        "I only echo; set OPENAI_API_KEY or OPENAI_BASE_URL for real answers." + documents(messages)
    )


def documents(messages: list[dict[str, Any]]) -> str:
    """What the business's documents gave (common/knowledge/grounding.py's block): the first
    passage quoted, with the sources mark a real model is asked for; "" without a knowledge base."""
    system = " ".join(
        words(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "system"
    )
    passages = grounding.quoted(system)
    if passages:
        title, text = passages[0]
        text = " ".join(text.split())
        text = text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"
        return f"\nFrom the business's documents, “{title}”: {text}\n[sources: 1]"
    if grounding.NOTHING in system:
        return "\nThe business's documents hold nothing on that.\n[sources: none]"
    return ""


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The answer: a tool call when the words name an action (local/offline_tools.py), else the echo."""
    messages, tools = body.get("messages") or [], body.get("tools") or []
    message = offline_tools.reply(messages, tools, LABEL) if tools else None
    if message is None:
        message = {"role": "assistant", "content": answer(messages)}
    content = message.get("content") or ""
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or MODEL),
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                "message": message,
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(content.split()), "total_tokens": 0},
    }


def chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The same answer as `stream: true` chunks: role, content, then the finish reason."""
    whole = completion(body)
    base = {k: whole[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    said = whole["choices"][0]["message"]["content"] or ""
    deltas = [{"role": "assistant", "content": ""}, {"content": said}]
    out = [base | {"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    out.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms ACK wait

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "code": None}})

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/v1/models"):
            model = {"id": MODEL, "object": "model", "owned_by": "local"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._error(400, "the body is not JSON")
            return
        if self.path.endswith("/audio/speech"):
            self._speech(body)
        elif self.path.endswith("/embeddings"):
            status, answer = offline_embeddings.answer(body)
            log.info("offline model: embedded", inputs=len(answer.get("data") or []))
            self._json(status, answer)
        elif not self.path.endswith("/chat/completions"):
            self._error(404, f"the offline stand-in does chat, speech and embeddings, not {self.path}")
        elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "messages is required")
        elif body.get("stream"):
            self._stream(body)
        else:
            log.info("offline model: answered", turns=len(body["messages"]))
            self._json(200, completion(body))

    def _speech(self, body: Any) -> None:
        """audio.speech with espeak-ng (local/offline_speech.py): always OGG/Opus, whatever was asked."""
        text = body.get("input") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            self._error(400, "input is required")
            return
        try:
            audio = offline_speech.synthesize(text)
        except offline_speech.NoSynthesizer as exc:
            self._error(400, str(exc))  # a 4xx: the bot answers in text
            return
        log.info("offline model: spoke", chars=len(text), bytes=len(audio))
        self.send_response(200)
        self.send_header("Content-Type", "audio/ogg")
        self.send_header("Content-Length", str(len(audio)))
        self.end_headers()
        self.wfile.write(audio)

    def _stream(self, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks(body):
            self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def log_message(self, *args: object) -> None:  # one structured line per answer is enough
        pass


def main() -> int:
    port = int(config.get("OFFLINE_MODEL_PORT", "8091") or 8091)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    return serving.run(server, "offline model", url=f"http://127.0.0.1:{port}/v1")


if __name__ == "__main__":
    sys.exit(main())
