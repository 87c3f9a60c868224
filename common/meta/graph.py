"""WhatsApp Cloud (Graph) API client: send, mark read, media; errors decided on Meta's error code.

One requests.Session per instance (keep-alive), timeouts on every call (GRAPH_TIMEOUT_SECONDS).
The bearer token goes with each request, never as a session default, and a media download only
to a host `download_allowed` accepts. A GraphError says whether a retry can help (`retriable`:
the functions raise those for Pub/Sub to redeliver) and whether the token or its permissions
failed (`auth`: an outage to alert on, not a bad message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from common import config, log

# Meta error codes a later attempt can fix: throttling (4, 17, 32, 613, 80007, 130429, 131048 spam
# rate limit, 131056 pair rate limit) and transient failures (1, 2, 131000, 131016).
RETRIABLE_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131048, 131056})
AUTH_CODES = frozenset({0, 10, 190, *range(200, 300)})  # token expired or revoked, permission missing
CONNECT_TIMEOUT = 3.05  # seconds
READ_TIMEOUT = 20.0  # seconds (GRAPH_TIMEOUT_SECONDS)
DOWNLOAD_CHUNK = 64 * 1024  # bytes read from the socket at a time
BSUID = re.compile(r"^[A-Z]{2}\.\w+$")  # business-scoped user id, e.g. US.13491208655302741918
META_API_HOST = "graph.facebook.com"
META_MEDIA_HOSTS = ("fbsbx.com", "fbcdn.net", "whatsapp.net")  # and their subdomains, https only
MAX_BUTTONS, MAX_BUTTON_TITLE, MAX_BUTTON_BODY = 3, 20, 1024  # reply buttons, as Meta allows


class GraphError(Exception):
    """The Graph API refused or failed; `retriable`: Pub/Sub should redeliver; `auth`: token error."""

    def __init__(
        self, status: int, code: int | None, title: str, retriable: bool, auth: bool | None = None
    ) -> None:
        super().__init__(f"Graph API {status} code={code} {title}")
        self.status, self.code, self.title, self.retriable = status, code, title, retriable
        self.auth = code in AUTH_CODES if auth is None else auth


AUTH_ALERT = "Graph API token or permission error"  # the message docs/logs.md's alert matches


def alert_auth(exc: GraphError, **fields: Any) -> None:
    """The one ERROR line a token or permission error writes: an outage, not a bad message."""
    log.error(AUTH_ALERT, alert="graph_auth", code=exc.code, status=exc.status, **fields)


class DownloadRefused(GraphError):
    """The media url is not one the token may be sent to (not https on Meta's hosts, or a foreign host)."""

    def __init__(self, host: str, scheme: str) -> None:
        super().__init__(0, None, f"download refused: {scheme}://{host}", retriable=False)
        self.host, self.scheme = host, scheme


@dataclass(frozen=True, slots=True)
class MediaInfo:
    url: str
    mime_type: str
    file_size: int | None
    sha256: str | None


def classify(status: int, body: Any) -> GraphError:
    """Decide on error.code, not the HTTP status; no code: 5xx and 429 are retriable."""
    error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    title = str(error.get("error_user_title") or error.get("message") or error.get("type") or "")[:200]
    if code is not None and code in AUTH_CODES and status != 429:
        return GraphError(status, code, title, retriable=False, auth=True)
    if (code is not None and code in RETRIABLE_CODES) or status == 429:
        retriable = True
    elif code is not None and status < 500:
        retriable = False
    else:
        retriable = status >= 500
    return GraphError(status, code, title, retriable, auth=False)


def download_allowed(url: str, base: str) -> bool:
    """May the bearer token go to `url`? With Meta's API: https on Meta's media hosts only.
    With any other base (the simulator, tests): only its own scheme, host and port."""
    target, api = urlsplit(url), urlsplit(base)
    try:
        target_port, api_port = target.port, api.port
    except ValueError:  # a port that is not a number
        return False
    host = (target.hostname or "").lower()
    if (api.hostname or "").lower() == META_API_HOST:
        return target.scheme == "https" and any(
            host == family or host.endswith("." + family) for family in META_MEDIA_HOSTS
        )
    return (target.scheme, host, target_port) == (api.scheme, (api.hostname or "").lower(), api_port)


def digits(value: str, what: str) -> str:
    """A Graph object id that goes into a url path: digits only, else a GraphError (no retry)."""
    if not value.isascii() or not value.isdigit():
        raise GraphError(0, None, f"{what} is not a number", retriable=False)
    return value


class GraphClient:
    def __init__(
        self,
        token: str | None = None,
        base: str | None = None,
        version: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.token = token or config.get("WHATSAPP_TOKEN") or ""
        self.base = (base or config.get("WHATSAPP_API_BASE") or "").rstrip("/")
        self.root = f"{self.base}/{version or config.get('WHATSAPP_API_VERSION')}"
        self.timeout = timeout or config.number("GRAPH_TIMEOUT_SECONDS", READ_TIMEOUT)
        self.session = requests.Session()

    def _call(self, method: str, url: str, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        """`timeout` (what is left of an attempt's deadline) shortens the client's own timeouts."""
        limit = (CONNECT_TIMEOUT, self.timeout)
        if timeout is not None:
            limit = (min(CONNECT_TIMEOUT, timeout), min(self.timeout, timeout))
        headers = {"Authorization": f"Bearer {self.token}"}  # per request: never a session default
        try:
            response = self.session.request(method, url, headers=headers, timeout=limit, **kwargs)
        except requests.RequestException as exc:  # timeouts, refused connections: try again later
            raise GraphError(0, None, type(exc).__name__, retriable=True) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise classify(response.status_code, body)
        return response

    def send_text(
        self,
        phone_number_id: str,
        to: str,
        body: str,
        reply_to: str | None = None,
        timeout: float | None = None,
        callback: str | None = None,
    ) -> str:
        """Send one text (≤ 4096 characters), quoted to `reply_to`; returns the new message id.
        `callback` (≤ 512 characters) comes back in the message's statuses."""
        text = {"body": body, "preview_url": False}
        return self._message(phone_number_id, to, "text", text, reply_to, timeout, callback)

    def send_audio(
        self,
        phone_number_id: str,
        to: str,
        media_id: str,
        reply_to: str | None = None,
        timeout: float | None = None,
        callback: str | None = None,
    ) -> str:
        """Send an uploaded OGG/Opus file as a voice note (`voice: true`: the round play button)."""
        audio = {"id": media_id, "voice": True}
        return self._message(phone_number_id, to, "audio", audio, reply_to, timeout, callback)

    def send_buttons(
        self,
        phone_number_id: str,
        to: str,
        body: str,
        buttons: list[tuple[str, str]],
        reply_to: str | None = None,
        timeout: float | None = None,
        callback: str | None = None,
    ) -> str:
        """Send reply buttons (`interactive.type: button`): `buttons` are (id, title) pairs, at
        most 3, each title at most 20 characters and the body at most 1024 (Meta's limits: a
        ValueError before anything is sent). A tap comes back as `interactive.button_reply`
        with that id, and `context.id` the id this returns."""
        if not 1 <= len(buttons) <= MAX_BUTTONS:
            raise ValueError(f"reply buttons: 1 to {MAX_BUTTONS}, not {len(buttons)}")
        for button_id, title in buttons:
            if not title.strip() or len(title) > MAX_BUTTON_TITLE or not 0 < len(button_id) <= 256:
                raise ValueError(f"reply button titles: 1 to {MAX_BUTTON_TITLE} characters, ids 1 to 256")
        interactive = {
            "type": "button",
            "body": {"text": body[:MAX_BUTTON_BODY]},
            "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in buttons]},
        }
        return self._message(phone_number_id, to, "interactive", interactive, reply_to, timeout, callback)

    def _message(
        self,
        phone_number_id: str,
        to: str,
        kind: str,
        content: dict[str, Any],
        reply_to: str | None,
        timeout: float | None,
        callback: str | None = None,
    ) -> str:
        """POST one message of `kind` (its `content` under that key); returns the new message id."""
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "type": kind,
            kind: content,
        }
        payload["recipient" if BSUID.match(to) else "to"] = to
        if reply_to:
            payload["context"] = {"message_id": reply_to}
        if callback:
            payload["biz_opaque_callback_data"] = callback
        url = f"{self.root}/{digits(phone_number_id, 'phone number id')}/messages"
        answer = self._call("POST", url, timeout=timeout, json=payload).json()
        messages = answer.get("messages") if isinstance(answer, dict) else None
        return str(messages[0].get("id", "")) if messages else ""

    def upload_media(
        self,
        phone_number_id: str,
        data: bytes,
        mime_type: str,
        filename: str,
        timeout: float | None = None,
    ) -> str:
        """Upload a file for sending (multipart: file, type, messaging_product); returns its media id."""
        url = f"{self.root}/{digits(phone_number_id, 'phone number id')}/media"
        form = {"messaging_product": "whatsapp", "type": mime_type}
        files = {"file": (filename, data, mime_type)}
        response = self._call("POST", url, timeout=timeout, data=form, files=files)
        try:
            media_id = response.json().get("id")
        except (ValueError, AttributeError):
            media_id = None
        if not isinstance(media_id, str) or not media_id:  # a proxy's page, a cut-off answer
            raise GraphError(response.status_code, None, "the upload answer has no media id", retriable=True)
        return media_id

    def mark_read(
        self, phone_number_id: str, message_id: str, typing: bool = True, timeout: float | None = None
    ) -> None:
        """Blue ticks, and the typing indicator while the answer is being made (~25 s)."""
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing:
            payload["typing_indicator"] = {"type": "text"}
        url = f"{self.root}/{digits(phone_number_id, 'phone number id')}/messages"
        self._call("POST", url, timeout=timeout, json=payload)

    def media_info(self, media_id: str) -> MediaInfo:
        """The media's short-lived download url (~5 minutes), type and size."""
        response = self._call("GET", f"{self.root}/{digits(media_id, 'media id')}")
        try:
            body = response.json()
        except ValueError as exc:  # a proxy's error page, a cut-off answer: try again later
            raise GraphError(response.status_code, None, "media info is not JSON", retriable=True) from exc
        if not isinstance(body, dict) or not body.get("url"):
            raise GraphError(response.status_code, None, "media info has no url", retriable=False)
        size = body.get("file_size")
        return MediaInfo(
            url=str(body["url"]),
            mime_type=str(body.get("mime_type") or "application/octet-stream"),
            file_size=int(size) if isinstance(size, (int, str)) and str(size).isdigit() else None,
            sha256=body.get("sha256"),
        )

    def download(self, url: str, limit: int, size: int | None = None) -> bytearray:
        """Stream the media with the bearer token; stop as soon as it exceeds `limit` bytes.

        The bytes land in one buffer allocated at the announced size (Content-Length, else `size`,
        the media info's declaration), never in a list of chunks and their join: a 20 MB file
        holds 20 MB, not 40. DownloadRefused, before anything is sent, when the url is not one the
        token may go to."""
        if not download_allowed(url, self.base):
            parts = urlsplit(url)
            raise DownloadRefused(parts.hostname or "", parts.scheme)
        response = self._call("GET", url, stream=True)  # requests drops the token on a redirect elsewhere
        with response:
            announced = _announced(response, size)
            if announced is not None and announced > limit:
                raise MediaTooLarge(announced, limit)
            buffer, end = bytearray(announced or 0), 0
            try:
                for chunk in response.iter_content(DOWNLOAD_CHUNK):
                    start, end = end, end + len(chunk)
                    if end > limit:
                        raise MediaTooLarge(end, limit)
                    buffer[start : min(end, len(buffer))] = chunk  # grows the buffer past its end
            except requests.RequestException as exc:  # cut off or stalled mid-stream: try again later
                raise GraphError(0, None, type(exc).__name__, retriable=True) from exc
        del buffer[end:]  # a shorter body than announced: shrunk in place
        return buffer


def _announced(response: requests.Response, size: int | None) -> int | None:
    """The body's size as announced: Content-Length when the body is not compressed, else `size`."""
    length = response.headers.get("Content-Length", "")
    plain = not response.headers.get("Content-Encoding")  # else the length is the compressed one
    if plain and length.isascii() and length.isdigit() and len(length) < 16:
        return int(length)
    return size if size is not None and size >= 0 else None


class MediaTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"media of {size} bytes is over the {limit} byte limit")
        self.size, self.limit = size, limit
