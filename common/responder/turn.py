"""What one message is, decided once before any work: its kind, its command, what the model gets.

`classify` looks at the envelope (and the settings: admins, the age limit) and nothing else: no
Firestore, no network. The steps (common/responder/steps/) read the `Turn` it returns instead of
looking at the text again, so the command text is parsed once per message, here. A new kind of
message is a new `Kind` and the step that answers it, not a branch in the steps there are.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from common.bus.envelope import ECHO, Envelope
from common.guard.policy import Policy, ids_of
from common.responder.inputs import WORD_TYPES, Inputs, Request

SILENT_TYPES = frozenset({"reaction", "system"})  # never answered (the webhook does not publish them)
ADMIN_COMMANDS = frozenset({"/pause", "/resume", "/stats", "/reply"})  # from an ADMIN_USERS id only


class Kind(enum.StrEnum):
    SILENT = "silent"  # a reaction or a system message: acknowledged, nothing stored
    STALE = "stale"  # older than MAX_MESSAGE_AGE_HOURS: acknowledged, not answered
    ECHO = "echo"  # the business answered from its app: the bot pauses for that chat
    REFUSED = "refused"  # a stranger, a voice note over the day's limit: today's one notice
    ADMIN = "admin"  # /pause, /resume, /stats, /reply from an admin (a malformed one goes to the model)
    HUMAN = "human"  # /human, with ADMIN_USERS set: a person takes the chat over
    RESET = "reset"  # /reset: forget the conversation
    HELP = "help"  # /help
    VOICE_SWITCH = "voice_switch"  # /voice on, /voice off
    USAGE = "usage"  # /usage: what is used and left today
    VOICE_FAILED = "voice_failed"  # a voice note the transcriber could not understand
    WORDS = "words"  # text, a button, a transcript, an unknown /command: for the model
    MEDIA = "media"  # a location, contacts, an image, a sticker, a document: for the model
    UNSUPPORTED = "unsupported"  # anything else (a video, an empty text): the polite reply


UNCLAIMED = frozenset({Kind.SILENT, Kind.STALE, Kind.ECHO})  # finished before any claim
FOR_THE_MODEL = frozenset({Kind.WORDS, Kind.MEDIA})
COMMAND_KINDS = {"/reset": Kind.RESET, "/help": Kind.HELP, "/usage": Kind.USAGE}
COMMAND_KINDS |= {"/voice on": Kind.VOICE_SWITCH, "/voice off": Kind.VOICE_SWITCH}


@dataclass(frozen=True, slots=True)
class Command:
    """A typed text starting with '/': its name, lowercased, and its arguments as typed."""

    name: str
    args: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """Lowercased, single-spaced: what the bot's own commands are matched on."""
        return " ".join((self.name, *self.args)).lower()

    @property
    def typed(self) -> str:
        """Single-spaced, the arguments as typed: a business-scoped id (/pause) is case-sensitive."""
        return " ".join((self.name, *self.args))

    @classmethod
    def parse(cls, envelope: Envelope) -> Command | None:
        words = (envelope.text or "").split()
        if envelope.type != "text" or not words or not words[0].startswith("/"):
            return None
        return cls(words[0].lower(), tuple(words[1:]))


@dataclass(frozen=True, slots=True)
class Turn:
    """One message as the steps see it."""

    envelope: Envelope
    kind: Kind
    command: Command | None = None
    request: Request | None = None  # what the model would get, not yet read (no download yet)

    @property
    def message_id(self) -> str:
        return self.envelope.message_id

    @property
    def user(self) -> str:
        return self.envelope.user

    @property
    def wants_history(self) -> bool:
        """Worth reading the conversation alongside the claim: the model, /usage or /human (what
        the user asked, for the admins) will need it."""
        return self.kind in FOR_THE_MODEL or self.kind in (Kind.USAGE, Kind.HUMAN)

    @property
    def words(self) -> str | None:
        """What a paused chat keeps of this message: the user's own words (a caption too); never a
        command to the bot."""
        if self.kind not in FOR_THE_MODEL:
            return None
        return (self.envelope.text or "").strip() or None


def classify(envelope: Envelope, policy: Policy, inputs: Inputs, age_limit: bool = True) -> Turn:
    """The message's kind, in the order that decides it (the first that fits). `age_limit` False:
    a delivery from the dead-letter topic is told what it is owed, whatever its age."""
    if envelope.type in SILENT_TYPES:
        return Turn(envelope, Kind.SILENT)
    if age_limit and policy.stale(envelope.timestamp):
        return Turn(envelope, Kind.STALE)
    if envelope.refused == ECHO:
        return Turn(envelope, Kind.ECHO)
    if envelope.refused:  # published without words or media
        return Turn(envelope, Kind.REFUSED)
    if envelope.transcription_error:
        return Turn(envelope, Kind.VOICE_FAILED)
    command, request = Command.parse(envelope), inputs.request(envelope)
    if command is not None:
        if command.name in ADMIN_COMMANDS and policy.is_admin(ids_of(envelope.user, envelope.to)):
            return Turn(envelope, Kind.ADMIN, command, request)
        if command.text == "/human" and policy.admins:  # someone to hand the chat to
            return Turn(envelope, Kind.HUMAN, command, request)
        if (kind := COMMAND_KINDS.get(command.text)) is not None:
            return Turn(envelope, kind, command, request)
    if request is None:
        return Turn(envelope, Kind.UNSUPPORTED, command)
    words = envelope.transcript or envelope.type in WORD_TYPES
    return Turn(envelope, Kind.WORDS if words else Kind.MEDIA, command, request)
