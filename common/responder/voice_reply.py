"""Voice replies: whether a reply is spoken, how it becomes parts, `/voice on|off`, and the voice part.

`VOICE_REPLY` [text]: `text`, `voice` (a voice note is answered with a voice note) or `both`
(the voice note, then the whole answer as text). A user's `/voice on|off` (stored in their
conversation document, field `voice`) overrides it for them: `on` = `voice` (or `both` when that
is the setting), `off` = `text`. Typed messages are always answered in text.

Long answers: the voice note speaks the answer up to VOICE_REPLY_MAX_CHARS (cut at a paragraph,
sentence or word end) and the rest follows as text. Why: the listener hears the start at once
(the gist, usually), nothing is lost or summarised, and the note stays well under WhatsApp's
512 KB player limit (1000 characters are about a minute of speech, about 190 KB at 24 kb/s). The history keeps
the whole answer: what was spoken plus what was written.

Exactly once: the voice note is part 0 of the reply (`partsSent` counts it). Its media id is kept
on the claim once uploaded; a retriable failure writes it with the claim's release (no extra
Firestore operation), and the retry sends that upload instead of speaking and uploading again.
Speech the model refuses, and an upload Meta refuses for good (a non-retriable Graph error that
is not a token error), fall back to text: the reply is written instead of spoken, never dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from common import config, log
from common.ai.speech import MAX_INPUT_CHARS, Speech, SpeechRefused, SpeechUnavailable
from common.bus.envelope import Envelope
from common.meta.chunks import split_text
from common.meta.graph import GraphClient, GraphError
from common.store.claims import Claim
from common.store.history import Conversation, History

MODES = ("text", "voice", "both")
DEFAULTS = {
    "VOICE_ON_TEXT": "Voice replies on: I will answer your voice notes with voice notes. /voice off stops.",
    "VOICE_OFF_TEXT": "Voice replies off: I will answer your voice notes in text. /voice on starts them.",
}


@dataclass(frozen=True, slots=True)
class Part:
    kind: str  # "voice" or "text"
    text: str
    fallback: bool = False  # a voice part that is sent as text when it cannot be spoken


def plan(reply: str, mode: str, max_chars: int) -> list[Part]:
    """The reply as the messages to send, in order; a voice note first when it is spoken."""
    if mode not in ("voice", "both"):
        return [Part("text", p) for p in split_text(reply)]
    spoken = split_text(reply, max_chars)[0]
    rest = reply[len(spoken) :]
    written = split_text(reply) if mode == "both" else (split_text(rest) if rest.strip() else [])
    return [Part("voice", spoken, fallback=mode == "voice"), *(Part("text", p) for p in written)]


def capped(parts: list[Part], cap: Callable[[list[str], int], list[str]]) -> list[Part]:
    """MAX_REPLY_PARTS counts every message of a reply: a voice note leaves less room for text."""
    voice = [part for part in parts if part.kind == "voice"]
    written = cap([part.text for part in parts if part.kind == "text"], len(voice))
    return [*voice, *(Part("text", text) for text in written)]


def settings() -> tuple[str, int]:
    """(VOICE_REPLY, VOICE_REPLY_MAX_CHARS); refuses values the responder could not act on."""
    mode = (config.get("VOICE_REPLY") or "text").lower()
    if mode not in MODES:
        raise RuntimeError(f"VOICE_REPLY must be one of {', '.join(MODES)}, got {mode!r}")
    max_chars = int(config.number("VOICE_REPLY_MAX_CHARS", 1000))
    if not 1 <= max_chars <= MAX_INPUT_CHARS:
        raise RuntimeError(f"VOICE_REPLY_MAX_CHARS must be 1..{MAX_INPUT_CHARS}, got {max_chars}")
    return mode, max_chars


class VoiceReplies:
    """Holds the speech client; the responder asks it for the parts and hands it the voice part."""

    def __init__(self, history: History, graph: GraphClient) -> None:
        self.history, self.graph = history, graph
        self.mode, self.max_chars = settings()
        self.on_text = config.get("VOICE_ON_TEXT") or DEFAULTS["VOICE_ON_TEXT"]
        self.off_text = config.get("VOICE_OFF_TEXT") or DEFAULTS["VOICE_OFF_TEXT"]
        self._speech: Speech | None = None

    @property
    def speech(self) -> Speech:
        if self._speech is None:  # no speech client for a bot that never speaks
            self._speech = Speech()
        return self._speech

    def switch(self, user: str, choice: str) -> None:
        """`/voice on|off`: store the user's choice with their conversation (1 write)."""
        self.history.choose_voice(user, choice)

    def confirmation(self, choice: str) -> str:
        return self.on_text if choice == "on" else self.off_text

    def parts(self, envelope: Envelope, reply: str, conversation: Conversation | None = None) -> list[Part]:
        """A voice note's reply may be spoken, by the user's choice: read with `conversation` when
        the turn loaded it, else 1 read; anything else is text."""
        return plan(reply, self._mode_for(envelope, conversation), self.max_chars)

    def _mode_for(self, envelope: Envelope, conversation: Conversation | None) -> str:
        if envelope.type != "audio" or not envelope.transcript:
            return "text"  # typed messages are always answered with text
        choice = conversation.voice if conversation is not None else self.history.voice(envelope.user)
        if choice == "off":
            return "text"
        if choice == "on" and self.mode == "text":
            return "voice"
        return self.mode

    def send(
        self,
        envelope: Envelope,
        claim: Claim,
        part: Part,
        quote: str | None,
        deadline: float,
        last_chance: bool = False,
        callback: str | None = None,
    ) -> bool:
        """Speak, upload and send the voice part (or its text when it cannot be spoken), with the
        part's `callback` data; False when nothing was sent (`both`: the text follows anyway).
        GraphError and, unless this is the last chance (dead-lettered), SpeechUnavailable
        propagate: the message is retried."""
        fields = {"message_id": envelope.message_id}
        if not claim.media_id:
            try:
                note = self.speech.voice_note(part.text, deadline)
            except (SpeechRefused, SpeechUnavailable) as exc:
                if isinstance(exc, SpeechUnavailable) and not last_chance:
                    raise
                log.warning(
                    "speech failed: answering in text", **fields, reason=str(exc), chars=len(part.text)
                )
                return self._written(envelope, part, quote, deadline, callback)
            try:
                claim.media_id = self.graph.upload_media(
                    envelope.phone_number_id, note.data, "audio/ogg", "voice.ogg", timeout=_left(deadline)
                )
            except GraphError as exc:
                if exc.retriable or exc.auth:
                    raise
                log.warning(
                    "voice note refused: answering in text", **fields, code=exc.code, status=exc.status
                )
                return self._written(envelope, part, quote, deadline, callback)
            log.info(
                "voice note uploaded",
                **fields,
                bytes=len(note.data),
                seconds=round(note.seconds, 1),
                reencoded=note.reencoded,
            )
        self.graph.send_audio(
            envelope.phone_number_id,
            envelope.to,
            claim.media_id,
            reply_to=quote,
            timeout=_left(deadline),
            callback=callback,
        )
        return True

    def _written(
        self, envelope: Envelope, part: Part, quote: str | None, deadline: float, callback: str | None
    ) -> bool:
        """The voice part as text where it stands for the words (`voice`); `both` writes them anyway."""
        if part.fallback:
            self.graph.send_text(
                envelope.phone_number_id,
                envelope.to,
                part.text,
                reply_to=quote,
                timeout=_left(deadline),
                callback=callback,
            )
        return part.fallback


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.1)
