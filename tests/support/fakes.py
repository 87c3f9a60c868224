"""Loopback stand-ins for the services this machine cannot reach: the Graph API and OpenAI.

Real HTTP servers on 127.0.0.1 that speak the wire formats, record every request and can be told
to fail the next N calls (status + body + delay), so tests see exactly what went over the wire.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from common.meta.signature import sign
from local import offline_embeddings

# What the speech stand-in answers unless a test sets FakeOpenAI.speech: a real voice note.
SPEECH = Path(__file__).resolve().parent.parent / "audio" / "en_weather.ogg"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the fake answered
    at: float = field(default_factory=time.perf_counter)  # when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Failure:
    path_contains: str
    status: int
    body: Any
    times: int
    delay: float = 0.0
    when: Callable[[Recorded], bool] | None = None  # only requests this accepts (their JSON, say)


@dataclass
class Hook:
    """Something to do when a request arrives (e.g. kill the caller: a crash at that step)."""

    matches: Callable[[Recorded], bool]
    action: Callable[[], None]
    # False: before answering (the request never succeeds). True: once accepted (recorded with its
    # answer), before the answer is written, so a crash there cannot race the caller's next step.
    after_answer: bool


@dataclass
class Answer:
    status: int
    body: Any = None  # dict -> JSON, bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """A threaded HTTP server whose subclasses implement `route(recorded) -> Answer`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.failures: list[Failure] = []
        self.hooks: list[Hook] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fail(
        self,
        path_contains: str,
        status: int,
        body: Any = None,
        times: int = 1,
        delay: float = 0,
        when: Callable[[Recorded], bool] | None = None,
    ) -> None:
        """Answer the next `times` requests whose path contains `path_contains` (and that `when`
        accepts) with this failure."""
        with self.lock:
            self.failures.append(Failure(path_contains, status, body, times, delay, when))

    def on(
        self, matches: Callable[[Recorded], bool], action: Callable[[], None], after_answer: bool = False
    ) -> None:
        """Run `action` once, on the next request that `matches`."""
        with self.lock:
            self.hooks.append(Hook(matches, action, after_answer))

    def _take_hook(self, request: Recorded, after_answer: bool) -> Hook | None:
        with self.lock:
            for hook in self.hooks:
                if hook.after_answer == after_answer and hook.matches(request):
                    self.hooks.remove(hook)
                    return hook
        return None

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.failures.clear()
            self.hooks.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def route(self, request: Recorded) -> Answer:
        raise NotImplementedError

    def _answer(self, request: Recorded) -> Answer:
        with self.lock:
            self.requests.append(request)
            for failure in self.failures:
                if (
                    failure.times > 0
                    and failure.path_contains in request.path
                    and (failure.when is None or failure.when(request))
                ):
                    failure.times -= 1
                    break
            else:
                failure = None
        if failure is not None:
            time.sleep(failure.delay)
            answer = Answer(failure.status, failure.body)
        else:
            answer = self.route(request)
        request.status = answer.status
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms ACK wait

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
                hook = server._take_hook(recorded, after_answer=False)
                if hook is not None:
                    hook.action()
                    recorded.status = 599  # the caller is gone: nothing was accepted
                    server.requests.append(recorded)
                    self.close_connection = True
                    return
                answer = server._answer(recorded)
                hook = server._take_hook(recorded, after_answer=True)
                if hook is not None:
                    hook.action()
                payload = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
                content_type = "application/json" if not isinstance(answer.body, bytes) else "audio/ogg"
                headers = {"Content-Type": content_type, **answer.headers}
                with contextlib.suppress(OSError):  # a hook may have killed the caller
                    self.send_response(answer.status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                        self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        return Handler


def graph_error(code: int, message: str = "error") -> dict[str, Any]:
    """A Graph-style error body."""
    return {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Afake"}}


class FakeGraph(FakeServer):
    """The parts of the WhatsApp Cloud API the functions use: send, mark read, media; and, once
    told where the webhook is (`report_statuses`), Meta's `sent` and `delivered` statuses of each
    message it accepted, posted signed to the webhook as Meta posts them."""

    def __init__(self, token: str = "test-whatsapp-token", version: str = "v25.0") -> None:
        self.token, self.version = token, version
        self.status_webhook: tuple[str, str] | None = None  # (url, app secret)
        self.statuses_posted: list[tuple[str, int]] = []  # (status, the webhook's answer)
        self.status_delay = 0.05
        self.media: dict[str, tuple[bytes, str, int]] = {}  # id -> (bytes, mime type, declared size)
        self.media_urls: dict[str, str] = {}  # id -> download url to name instead of our own
        self._ids = itertools.count(1)
        self._media_ids = itertools.count(10**15 + 1)  # uploads get digit ids, as Meta's
        self.ids: list[str] = []  # the id of every message accepted, in order
        super().__init__()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.ids.clear()
            self.statuses_posted.clear()

    def message_ids(self) -> list[str]:
        """The ids the accepted messages were given (what a reply or a tap names as context)."""
        with self.lock:
            return list(self.ids)

    def add_media(self, media_id: str, data: bytes, mime_type: str, declared_size: int | None = None) -> None:
        self.media[media_id] = (data, mime_type, len(data) if declared_size is None else declared_size)

    def point_media(self, media_id: str, url: str) -> None:
        """Name `url` as the download url of `media_id` (another host, plain http, ...)."""
        self.media_urls[media_id] = url

    def report_statuses(self, webhook_url: str | None, app_secret: str = "", after: float = 0.05) -> None:
        """From now on (None: no longer) report every accepted message to the webhook, `after`
        seconds after accepting it."""
        self.status_webhook = (webhook_url, app_secret) if webhook_url else None
        self.status_delay = after

    def _report(self, payload: dict[str, Any], wamid: str) -> None:
        """Meta's statuses of an accepted message, in the background, after its answer: `sent`
        then `delivered`, each in its own signed POST, with the message's callback data."""
        if self.status_webhook is None or payload.get("status") == "read":
            return
        url, secret = self.status_webhook
        metadata = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}

        def post() -> None:
            for status in ("sent", "delivered"):
                item = {"id": wamid, "status": status, "timestamp": str(int(time.time()))}
                item["recipient_id"] = str(payload.get("to") or payload.get("recipient") or "")
                if payload.get("biz_opaque_callback_data"):
                    item["biz_opaque_callback_data"] = payload["biz_opaque_callback_data"]
                value = {"messaging_product": "whatsapp", "metadata": metadata, "statuses": [item]}
                body = json.dumps(
                    {
                        "object": "whatsapp_business_account",
                        "entry": [
                            {"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}
                        ],
                    }
                ).encode()
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}
                try:
                    answer = requests.post(url, data=body, headers=headers, timeout=10)
                    self.statuses_posted.append((status, answer.status_code))
                except requests.RequestException:
                    self.statuses_posted.append((status, 0))

        threading.Timer(self.status_delay, post).start()

    def sent(self) -> list[dict[str, Any]]:
        """Every text message accepted (2xx), in order of arrival."""
        return [
            r.json()
            for r in list(self.requests)
            if r.path.endswith("/messages") and r.status < 300 and r.json().get("type") == "text"
        ]

    def messages(self) -> list[dict[str, Any]]:
        """Every message accepted (2xx) but read receipts, any type, in order of arrival."""
        return [
            r.json()
            for r in list(self.requests)
            if r.path.endswith("/messages") and r.status < 300 and r.json().get("status") != "read"
        ]

    def audios(self) -> list[dict[str, Any]]:
        """Every audio message accepted (2xx), in order of arrival."""
        return [m for m in self.messages() if m.get("type") == "audio"]

    def uploads(self) -> list[dict[str, tuple[str | None, bytes]]]:
        """Every media upload accepted (2xx), as its multipart fields: name -> (filename, bytes)."""
        return [
            multipart_fields(r) for r in list(self.requests) if r.path.endswith("/media") and r.status < 300
        ]

    def reads(self) -> list[dict[str, Any]]:
        return [
            r.json()
            for r in list(self.requests)
            if r.path.endswith("/messages") and r.json().get("status") == "read"
        ]

    @staticmethod
    def is_text_send(request: Recorded) -> bool:
        return request.path.endswith("/messages") and request.json().get("type") == "text"

    def downloads(self) -> list[Recorded]:
        return [r for r in list(self.requests) if r.path.startswith("/download/")]

    def route(self, request: Recorded) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, graph_error(190, "Invalid OAuth access token."))
        parts = request.path.strip("/").split("/")
        if (
            request.method == "POST"
            and len(parts) == 3
            and parts[0] == self.version
            and parts[2] == "messages"
        ):
            payload = request.json()
            if payload.get("status") == "read":
                return Answer(200, {"success": True})
            to = payload.get("to") or payload.get("recipient")
            wamid = f"wamid.FAKE{next(self._ids):08d}"
            with self.lock:
                self.ids.append(wamid)
            self._report(payload, wamid)
            return Answer(
                200,
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": wamid}],
                },
            )
        if request.method == "POST" and len(parts) == 3 and parts[0] == self.version and parts[2] == "media":
            fields = multipart_fields(request)
            if "file" not in fields or fields.get("messaging_product", (None, b""))[1] != b"whatsapp":
                return Answer(400, graph_error(100, "(#100) Param file and messaging_product are required"))
            media_id = str(next(self._media_ids))
            data, mime_type = fields["file"][1], fields.get("type", (None, b""))[1].decode()
            self.add_media(media_id, data, mime_type)
            return Answer(200, {"id": media_id})
        if (
            request.method == "GET"
            and len(parts) == 2
            and parts[0] == self.version
            and parts[1] in self.media
        ):
            data, mime_type, size = self.media[parts[1]]
            return Answer(
                200,
                {
                    "messaging_product": "whatsapp",
                    "url": self.media_urls.get(parts[1], f"{self.url}/download/{parts[1]}"),
                    "mime_type": mime_type,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": size,
                    "id": parts[1],
                },
            )
        if request.method == "GET" and parts[0] == "download" and parts[-1] in self.media:
            return Answer(200, self.media[parts[-1]][0])
        return Answer(404, graph_error(100, "Unsupported request"))


def echo_model(messages: list[dict[str, Any]]) -> str:
    """The default stand-in model: says what it was given, so tests can check the prompt."""
    user_turns = [m["content"] for m in messages if m["role"] == "user"]
    return f"echo: {user_turns[-1] if user_turns else ''} (turns seen: {len(messages)})"


class FakeOpenAI(FakeServer):
    """Chat completions, speech, transcriptions and embeddings, in OpenAI's wire format (what the
    openai SDK sends and parses)."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], Any] = echo_model) -> None:
        self._default_answer = answer
        super().__init__()
        self._defaults()

    def _defaults(self) -> None:
        self.answer = self._default_answer
        self.transcript = "a transcript from the fake"
        self.delay = 0.0  # seconds the model "thinks" before answering
        self.tokens = (1, 1)  # (prompt, completion) tokens each chat answer reports in `usage`
        self.speech = SPEECH.read_bytes()  # what /audio/speech answers: a mono OGG/Opus recording

    def reset(self) -> None:
        """Forget requests, failures and hooks, and answer as a new server would."""
        super().reset()
        self._defaults()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _answer(self, request: Recorded) -> Answer:
        """Every answer, failures too, carries a request id, as OpenAI's do (`x-request-id`)."""
        answer = super()._answer(request)
        answer.headers = {"x-request-id": f"req_fake{len(self.requests):04d}", **answer.headers}
        return answer

    def chats(self) -> list[dict[str, Any]]:
        return [r.json() for r in list(self.requests) if r.path.endswith("/chat/completions")]

    def transcriptions(self) -> list[dict[str, Any]]:
        """Each transcription request as its multipart fields: name -> (filename, bytes)."""
        return [multipart_fields(r) for r in list(self.requests) if r.path.endswith("/audio/transcriptions")]

    def speeches(self) -> list[dict[str, Any]]:
        """Each /audio/speech request's JSON body."""
        return [r.json() for r in list(self.requests) if r.path.endswith("/audio/speech")]

    def embeddings(self) -> list[dict[str, Any]]:
        """Each /embeddings request's JSON body (answered by local/offline_embeddings.py)."""
        return [r.json() for r in list(self.requests) if r.path.endswith("/embeddings")]

    def route(self, request: Recorded) -> Answer:
        if request.path.endswith("/audio/speech"):
            return Answer(200, self.speech, {"Content-Type": "audio/ogg"})
        if request.path.endswith("/chat/completions"):
            body = request.json()
            time.sleep(self.delay)
            said = self.answer(body["messages"])  # a text, or a whole message (tool_calls)
            message = said if isinstance(said, dict) else {"role": "assistant", "content": said}
            return Answer(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                            "message": message,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": self.tokens[0],
                        "completion_tokens": self.tokens[1],
                        "total_tokens": sum(self.tokens),
                    },
                },
            )
        if request.path.endswith("/audio/transcriptions"):
            return Answer(200, {"text": self.transcript})
        if request.path.endswith("/embeddings"):
            return Answer(*offline_embeddings.answer(request.json()))
        return Answer(404, {"error": {"message": "not found", "type": "invalid_request_error"}})


def multipart_fields(request: Recorded) -> dict[str, tuple[str | None, bytes]]:
    header = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(header + request.body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


class FakeGoogleSpeech(FakeServer):
    """The Google Web Speech endpoint SpeechRecognition's `recognize_google` posts FLAC to."""

    def __init__(self, transcript: str = "a transcript from the fake") -> None:
        self.transcript = transcript
        super().__init__()

    @property
    def endpoint(self) -> str:
        return f"{self.url}/speech-api/v2/recognize"

    def route(self, request: Recorded) -> Answer:
        if not request.path.startswith("/speech-api/v2/recognize"):
            return Answer(404, {"error": "not found"})
        alternatives = [{"transcript": self.transcript}] if self.transcript else []
        result = [{"alternative": alternatives, "final": True}] if alternatives else []
        lines = [{"result": []}, {"result": result, "result_index": 0}]  # the chunked shape Google sends
        body = "\n".join(json.dumps(line) for line in lines) + "\n"
        return Answer(200, body.encode(), {"Content-Type": "application/json; charset=utf-8"})
