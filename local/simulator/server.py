"""The simulator's web server: the chat page, its JSON API (also the CLI's), live events, Graph API.

Run by `make dev` as `python -m local.simulator`; settings come from the environment:
SIMULATOR_PORT, WEBHOOK_URL (where Meta's POSTs go), WHATSAPP_APP_SECRET, WHATSAPP_TOKEN,
SIMULATOR_TOKEN (the per-run token of the JSON API, see guard.py; made up when unset).
Serves 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.serving import WSGIRequestHandler, make_server

from common import config
from common.guard import policy
from local import serving
from local.simulator import attachments, audio, graph_api, guard
from local.simulator.meta import Meta, message_payload
from local.simulator.state import ChatMessage, Store, User, wamid

STATIC = Path(__file__).resolve().parent / "static"
PHONE = re.compile(r"^\d{6,15}$")
BSUID = re.compile(r"^[A-Z]{2}\.\w{5,}$")
DEFAULT_USERS = (("15551234567", "Alex"), ("4915112345678", "Mia"))
WAIT_LIMIT = 300.0
TOKEN_PLACEHOLDER = "{{SIMULATOR_TOKEN}}"  # noqa: S105 (index.html: the page reads it from a meta tag)


def create_app(webhook_url: str, app_secret: str, token: str, simulator_token: str | None = None) -> Flask:
    """A Flask app with its own Store; tests may create several. `token` is the Graph API's."""
    app = Flask(__name__, static_folder=None)
    simulator_token = simulator_token or secrets.token_urlsafe(18)
    guard.install(app, simulator_token, audio.MAX_AUDIO_BYTES + 1024 * 1024)
    store, meta, urls = Store(), Meta(webhook_url, app_secret), graph_api.MediaUrls()
    for phone, name in DEFAULT_USERS:
        store.add_user(phone, name)
    admins = sorted(policy.id_set(config.get("ADMIN_USERS")))  # guardrails: the page offers /pause
    for admin in admins:
        if store.find_user(admin) is None:
            phone = admin if admin.isdigit() else None
            store.add_user(phone, "Admin", user_id=None if phone else admin)
    app.register_blueprint(graph_api.blueprint(store, meta, token, urls), url_prefix="/graph")
    app.extensions["store"] = store

    def bad(reason: str, status: int = 400) -> tuple[Response, int]:
        return jsonify({"error": reason}), status

    page_html = (STATIC / "index.html").read_text().replace(TOKEN_PLACEHOLDER, simulator_token)

    @app.get("/")
    def page() -> Response:
        return Response(page_html, mimetype="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/api/session")
    def session() -> Response:
        """The per-run token, for the CLI (a page of another origin cannot read this answer)."""
        return jsonify({"token": simulator_token, "header": guard.TOKEN_HEADER})

    @app.get("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name)

    @app.get("/api/state")
    def state() -> Response:
        return jsonify({**store.snapshot(), "admins": admins})

    @app.post("/api/users")
    def add_user() -> Response | tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        user, why = user_from(str(body.get("phone") or ""), str(body.get("name") or ""))
        if user is None:
            return bad(why)
        return jsonify({"user": {"key": user.key, "phone": user.phone, "name": user.name}})

    def user_from(address: str, name: str) -> tuple[User | None, str]:
        """The known user at this phone / user id, or a new one (created on first use)."""
        address = address.strip().lstrip("+").replace(" ", "")
        known = store.find_user(address)
        if known is not None and (not name or name == known.name):
            return known, ""
        if PHONE.match(address):
            return store.add_user(address, name.strip() or f"User {address[-4:]}"), ""
        if BSUID.match(address):
            return store.add_user(None, name.strip() or f"User {address[-4:]}", user_id=address), ""
        return None, "a user is a phone number (6-15 digits, country code first) or a user id like US.123…"

    @app.post("/api/messages")
    def send() -> Response | tuple[Response, int]:
        """A user writes (JSON {user, name, text}), taps a reply button (JSON {user, reply_id,
        context_id}: the bot's message with the buttons), sends audio (multipart: user, name,
        voice, audio) or a photo or document (multipart: user, name, file, text as its caption).

        `?wait=SECONDS` answers only once the bot replied (or the time ran out): the CLI's way.
        """
        try:
            wait = min(float(request.args.get("wait") or 0), WAIT_LIMIT)
        except ValueError:
            return bad("wait is a number of seconds")
        form: Any = request.form if request.files else (request.get_json(silent=True) or {})
        user, why = user_from(str(form.get("user") or ""), str(form.get("name") or ""))
        if user is None:
            return bad(why)
        message = ChatMessage(
            id=wamid(user.key), user=user.key, sender="user", type="text", timestamp=time.time()
        )
        media = None
        if "audio" in request.files:
            try:
                data, mime, voice = audio.prepare(
                    request.files["audio"].read(), str(form.get("voice") or "auto")
                )
            except audio.AudioError as exc:
                return bad(str(exc), 413 if "limit" in str(exc) else 400)
            media = store.add_media(data, mime)
            message = replace(message, type="audio", media_id=media.id, mime_type=mime, voice=voice)
        elif "file" in request.files:
            upload = request.files["file"]
            data = upload.read()
            try:
                kind, mime, filename = attachments.prepare(data, upload.filename or "")
            except attachments.AttachmentError as exc:
                return bad(str(exc), 413 if "limited" in str(exc) else 400)
            media = store.add_media(data, mime)
            caption = str(form.get("text") or "").strip() or None
            extra = {"filename": filename} if filename else {}
            message = replace(
                message, type=kind, media_id=media.id, mime_type=mime, text=caption, extra=extra
            )
        elif form.get("reply_id"):
            tapped, why = tap(user, str(form.get("reply_id")), str(form.get("context_id") or ""))
            if tapped is None:
                return bad(why)
            extra, context = {"button_reply": tapped}, str(form["context_id"])
            message = replace(message, type="interactive", text=tapped["title"], extra=extra)
            message = replace(message, context_id=context)
        else:
            text = str(form.get("text") or "").strip()
            if not text:
                return bad("type a message, or send audio")
            message = replace(message, text=text, context_id=form.get("context_id") or None)
        message = store.add_message(message)
        media_url = urls.url(request.host_url, media.id) if media else ""
        delivered, why = meta.post(message_payload(user, message, media, media_url))
        if delivered:
            if store.messages[message.id].status == "pending":  # the bot may have read it already
                store.update_message(message.id, status="delivered")
        else:
            store.update_message(message.id, status="failed", error=why)
        answer: dict[str, Any] = {"message": store.messages[message.id].to_json()}
        if delivered and wait > 0:
            replies = store.wait_replies(message.id, wait)
            answer |= {"replies": [m.to_json() for m in replies], "timed_out": not replies}
        return jsonify(answer), 200 if delivered else 502

    def tap(user: User, reply_id: str, context_id: str) -> tuple[dict[str, str] | None, str]:
        """The {id, title} of a button of the bot's message `context_id` to this user: WhatsApp
        only lets a user tap a button they were sent (a tap answers that message)."""
        asked = store.messages.get(context_id)
        if asked is None or asked.user != user.key or asked.type != "interactive":
            return None, "context_id must be a message with buttons the bot sent this user"
        buttons = ((asked.extra.get("interactive") or {}).get("action") or {}).get("buttons") or []
        for button in buttons:
            if button["reply"]["id"] == reply_id:
                return {"id": reply_id, "title": button["reply"]["title"]}, ""
        return None, "that message has no button with this reply_id"

    @app.post("/api/read")
    def read() -> Response:
        """The page shows the bot's messages to the user: report them read to the webhook."""
        key = str((request.get_json(silent=True) or {}).get("user") or "")
        user = store.find_user(key)
        for message in store.conversation(key):
            if user is not None and message.sender == "bot" and message.status != "read":
                store.update_message(message.id, status="read")
                meta.report(user, message, "read")
        return jsonify({"success": True})

    @app.get("/api/media/<media_id>")
    def media(media_id: str) -> Response | tuple[Response, int]:
        found = store.media.get(media_id)
        if found is None:
            return bad("no such media", 404)
        response = Response(found.data, mimetype=found.mime_type.split(";")[0])
        return response.make_conditional(request, accept_ranges=True, complete_length=len(found.data))

    @app.get("/api/events")
    def events() -> Response:
        """Server-Sent Events: every change to users, messages and typing, as JSON."""

        def stream() -> Iterator[str]:
            subscription = store.subscribe()
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        event = subscription.get(timeout=15)
                    except queue.Empty:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            finally:
                store.unsubscribe(subscription)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(stream(), mimetype="text/event-stream", headers=headers)

    return app


class NoDelayHandler(WSGIRequestHandler):
    """Headers and body go out as separate writes: without TCP_NODELAY each reply waits ~40 ms."""

    disable_nagle_algorithm = True


def main() -> int:
    """Serve until SIGTERM/SIGINT (threaded werkzeug: one thread per request and event stream)."""
    port = int(config.get("SIMULATOR_PORT", "8090") or 8090)
    webhook_url = config.get("WEBHOOK_URL", "http://127.0.0.1:8080/") or ""
    secret, token = config.get("WHATSAPP_APP_SECRET"), config.get("WHATSAPP_TOKEN")
    simulator_token = config.get("SIMULATOR_TOKEN")
    if not secret or not token:
        print("simulator: WHATSAPP_APP_SECRET and WHATSAPP_TOKEN must be set", file=sys.stderr)
        return 2
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = create_app(webhook_url, secret, token, simulator_token)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=NoDelayHandler)
    return serving.run(server, "simulator", url=f"http://127.0.0.1:{port}/", webhook=webhook_url)
