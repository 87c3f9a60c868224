"""The transcriber's guardrails, before a voice note is downloaded: its age and the day's seconds.

A stale note (older than MAX_MESSAGE_AGE_HOURS) is neither downloaded nor transcribed: it goes on
unchanged and the responder acknowledges it as stale. With MAX_AUDIO_SECONDS_PER_DAY set, the
user's seconds so far today are read from their conversation document (1 read per voice note);
a user at the limit gets no download and no transcription, only the day's one LIMIT_TEXT from
the responder. The length of a note is known only once it is downloaded (WhatsApp's webhook and
media metadata carry no duration), so the note that crosses the limit is still transcribed (at
most MAX_AUDIO_SECONDS); its length as decoded (common/ai/transcription/decode.py: never what its
header states) travels in the envelope and is counted by the responder in the same write as the
turn.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from common import log
from common.bus.envelope import Envelope
from common.guard.policy import Policy

if TYPE_CHECKING:
    from google.cloud import firestore

OVER_AUDIO_LIMIT = "audio_limit"  # Envelope.refused


class VoiceQuota:
    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy.from_env()
        self._db: firestore.Client | None = None

    def hold(self, envelope: Envelope) -> Envelope | None:
        """The envelope to publish instead of transcribing, or None: go ahead and download."""
        ids = {"message_id": envelope.message_id, "user": log.mask(envelope.user)}
        if self.policy.stale(envelope.timestamp):
            log.info("stale voice note: not downloaded, not transcribed", **ids)
            return envelope
        limit = self.policy.max_audio_seconds
        if not limit:
            return None
        used = self._seconds_used(envelope.user)
        if used < limit:
            return None
        log.info("over the daily voice seconds: not downloaded", seconds=round(used), **ids)
        return replace(envelope, media=None, refused=OVER_AUDIO_LIMIT)

    def _seconds_used(self, user: str) -> float:
        """Today's voice seconds so far (1 read, of two fields). The store (google-cloud-firestore)
        is imported and its client made on the first read: a transcriber without
        MAX_AUDIO_SECONDS_PER_DAY never loads it."""
        from common.store import db, history
        from common.store.counters import Usage

        if self._db is None:
            self._db = db.client()
        fields = ["usageDay", "usageAudio"]
        snapshot = history.ref(self._db, user).get(field_paths=fields, **db.reading())
        return Usage.of(snapshot.to_dict() or {}, self.policy.day()).audio
