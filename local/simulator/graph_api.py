"""The simulator playing the Graph API for the functions: send, mark read + typing, media.

Same paths, bearer checks, response bodies and Graph-style error bodies as graph.facebook.com,
so `common/meta/graph.py` runs unchanged against it (WHATSAPP_API_BASE=http://…/graph).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from common import log
from local.simulator.meta import Meta
from local.simulator.state import PHONE_NUMBER_ID, ChatMessage, Store, wamid

MAX_TEXT = 4096
MAX_CALLBACK = 512  # biz_opaque_callback_data, returned in the message's statuses
MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # audio's limit for sending, as WhatsApp's
URL_SECONDS = 300  # media urls expire after ~5 minutes, as Meta's do
VERSION = re.compile(r"^v\d+\.\d+$")


def graph_error(status: int, code: int, message: str, kind: str = "OAuthException", **extra: Any) -> Response:
    """An error exactly as Graph shapes it: decided on `error.code`, traced by `fbtrace_id`."""
    body = {
        "message": message,
        "type": kind,
        "code": code,
        **extra,
        "fbtrace_id": "A" + secrets.token_hex(11),
    }
    response = jsonify({"error": body})
    response.status_code = status
    return response


def param_error(details: str) -> Response:
    return graph_error(
        400, 100, "(#100) Invalid parameter", error_data={"messaging_product": "whatsapp", "details": details}
    )


def unknown_object(object_id: str, method: str) -> Response:
    message = (
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be loaded "
        "due to missing permissions, or does not support this operation."
    )
    return graph_error(400, 100, message, kind="GraphMethodException", error_subcode=33)


def interactive_body(interactive: Any) -> tuple[str | None, str]:
    """The body of a reply-buttons message, or why Meta would refuse it (only `button` here)."""
    if not isinstance(interactive, dict) or interactive.get("type") != "button":
        return None, "interactive['type'] must be 'button' (the simulator renders reply buttons only)"
    body = (interactive.get("body") or {}).get("text")
    if not isinstance(body, str) or not body or len(body) > 1024:
        return None, "interactive['body']['text'] is required, at most 1024 characters"
    buttons = (interactive.get("action") or {}).get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return None, "interactive['action']['buttons'] must hold 1 to 3 buttons"
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if button.get("type") != "reply" or not isinstance(reply, dict):
            return None, "each button is {type: reply, reply: {id, title}}"
        title, button_id = reply.get("title"), reply.get("id")
        if not isinstance(title, str) or not 0 < len(title) <= 20:
            return None, "a button title must be 1 to 20 characters"
        if not isinstance(button_id, str) or not 0 < len(button_id) <= 256:
            return None, "a button id must be 1 to 256 characters"
    if len({b["reply"]["id"] for b in buttons}) != len(buttons):
        return None, "button ids must be unique"
    return body, ""


class MediaUrls:
    """Signed, expiring download urls, shaped like Meta's lookaside urls."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(16)

    def _hash(self, media_id: str, expires: int) -> str:
        return hmac.new(self.key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:24]

    def url(self, root: str, media_id: str) -> str:
        """`root` is the simulator's own base url as the caller reached it."""
        expires = int(time.time()) + URL_SECONDS
        return (
            f"{root.rstrip('/')}/graph/lookaside/whatsapp_business/attachments/"
            f"?mid={media_id}&ext={expires}&hash={self._hash(media_id, expires)}"
        )

    def valid(self, media_id: str, expires: str, given_hash: str) -> bool:
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(given_hash, self._hash(media_id, int(expires)))


def blueprint(store: Store, meta: Meta, token: str, urls: MediaUrls) -> Blueprint:
    """Routes under /graph: what WhatsApp's Cloud API answers to the transcriber and the responder."""
    graph = Blueprint("graph", __name__)

    @graph.before_request
    def check_token() -> Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return graph_error(401, 190, "An access token is required to request this resource.")
        if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        return None

    @graph.post("/<version>/<phone_number_id>/messages")
    def messages(version: str, phone_number_id: str) -> Response:
        if not VERSION.match(version):
            return graph_error(400, 2500, "Unknown path components: /" + version)
        if phone_number_id != PHONE_NUMBER_ID:
            return unknown_object(phone_number_id, "post")
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            return param_error("the body must be a JSON object")
        if payload.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        if payload.get("status") == "read":
            return mark_read(payload)
        return send(payload)

    def mark_read(payload: dict[str, Any]) -> Response:
        message = store.messages.get(str(payload.get("message_id")))
        if message is None or message.sender != "user":
            return param_error("Invalid message_id")
        if message.status != "read":
            store.update_message(message.id, status="read")
        if (payload.get("typing_indicator") or {}).get("type") == "text":
            store.set_typing(message.user)
        log.info(
            "simulator: marked read",
            typing="typing_indicator" in payload,
            message_id=message.id,
        )
        return jsonify({"success": True})

    def send(payload: dict[str, Any]) -> Response:
        address = str(payload.get("to") or payload.get("recipient") or "")
        if not address:
            return graph_error(400, 100, "(#100) The parameter to is required.")
        user = store.find_user(address.lstrip("+"))
        if user is None:
            return graph_error(
                400,
                131030,
                "(#131030) Recipient phone number not in allowed list",
                error_data={
                    "messaging_product": "whatsapp",
                    "details": "Recipient phone number not in allowed list: add it in the simulator first.",
                },
            )
        kind = str(payload.get("type") or "text")
        text = None
        if kind == "text":
            text = (payload.get("text") or {}).get("body")
            if not isinstance(text, str) or not text:
                return graph_error(400, 100, "(#100) The parameter text['body'] is required.")
            if len(text) > MAX_TEXT:
                return param_error(f"Param text['body'] must be at most {MAX_TEXT} characters long.")
        if kind == "interactive":
            text, why = interactive_body(payload.get("interactive"))
            if why:
                return param_error(why)
        context = (payload.get("context") or {}).get("message_id")
        if context and context not in store.messages:
            return param_error("Invalid context message_id")
        extra = {} if kind == "text" else {kind: payload.get(kind)}
        callback = payload.get("biz_opaque_callback_data")
        if callback is not None and (not isinstance(callback, str) or len(callback) > MAX_CALLBACK):
            return param_error(
                f"biz_opaque_callback_data must be a string of at most {MAX_CALLBACK} characters"
            )
        audio = payload.get("audio") if kind == "audio" and isinstance(payload.get("audio"), dict) else None
        media = store.media.get(str(audio.get("id"))) if audio else None
        if kind == "audio" and media is None:
            return param_error("audio['id'] is not a media id uploaded to this phone number")
        message = store.add_message(
            ChatMessage(
                id=wamid(user.key),
                user=user.key,
                sender="bot",
                type=kind,
                timestamp=time.time(),
                text=text,
                context_id=context,
                status="sent",
                extra=extra,
                media_id=media.id if media else None,
                mime_type=media.mime_type if media else None,
                voice=bool(audio and audio.get("voice")),
                callback=callback,
            )
        )
        meta.report(user, message, "sent")
        meta.report(user, message, "delivered")
        store.update_message(message.id, status="delivered")
        log.info(
            "simulator: bot message",
            type=kind,
            chars=len(text or ""),
            quoted=bool(context),
            message_id=message.id,
        )
        contact = {"input": address, "wa_id": user.phone} if user.phone else {"input": address}
        if user.user_id:
            contact["user_id"] = user.user_id
        return jsonify(
            {
                "messaging_product": "whatsapp",
                "contacts": [contact],
                "messages": [{"id": message.id, "message_status": "accepted"}],
            }
        )

    @graph.post("/<version>/<phone_number_id>/media")
    def upload(version: str, phone_number_id: str) -> Response:
        """Media for sending (multipart: file, type, messaging_product) -> {id}, as Meta answers."""
        if not VERSION.match(version):
            return graph_error(400, 2500, "Unknown path components: /" + version)
        if phone_number_id != PHONE_NUMBER_ID:
            return unknown_object(phone_number_id, "post")
        if request.form.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        file = request.files.get("file")
        mime_type = request.form.get("type") or (file.mimetype if file else "")
        if file is None or not mime_type:
            return param_error("the parameters file and type are required")
        data = file.read(MAX_UPLOAD_BYTES + 1)
        if not data or len(data) > MAX_UPLOAD_BYTES:
            return param_error(f"the file must be 1 to {MAX_UPLOAD_BYTES} bytes")
        media = store.add_media(data, mime_type)
        log.info("simulator: media uploaded", bytes=len(data), mime_type=mime_type)
        return jsonify({"id": media.id})

    @graph.get("/<version>/<media_id>")
    def media_info(version: str, media_id: str) -> Response:
        media = store.media.get(media_id)
        if not VERSION.match(version) or media is None:
            return unknown_object(media_id, "get")
        return jsonify(
            {
                "messaging_product": "whatsapp",
                "url": urls.url(request.host_url, media.id),
                "mime_type": media.mime_type,
                "sha256": media.sha256_hex,
                "file_size": len(media.data),
                "id": media.id,
            }
        )

    @graph.get("/lookaside/whatsapp_business/attachments/")
    def download() -> Response:
        args = request.args
        media = store.media.get(args.get("mid", ""))
        if media is None or not urls.valid(media.id, args.get("ext", ""), args.get("hash", "")):
            return Response("URL signature expired or invalid", status=404, mimetype="text/plain")
        log.info("simulator: media downloaded", bytes=len(media.data))
        return Response(media.data, mimetype=media.mime_type.split(";")[0])

    return graph
