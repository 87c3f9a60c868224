"""A claim's lease: how long it holds unrenewed, how often its attempt renews it, when it stops.

A working attempt renews its claim every `renew` seconds (common/store/heartbeat.py); a claim
nobody renewed for `seconds` may be taken over, so a crashed instance's message is answered about
one lease after the crash (plus Pub/Sub's back-off), however long attempts may run.

The lease is counted on Firestore's clock: it lapses `seconds` after the claim's last update
(the document's update time against the read time of the snapshot that finds it lapsed), so no
instance's clock is trusted. The holder counts it on its own monotonic clock from just before its
last write was sent, which is never later than Firestore's update time, and stops storing and
sending `margin` seconds before that count runs out: whatever it started by then (a send's
timeout is cut to it) has ended before anyone may take over. An attempt whose renewals fail thus
stops by itself, and two attempts never both act on one message, by construction.

`seconds >= 2 * renew + margin`: one renewal may fail, or be slow, without stopping a living
attempt. The responder, deploy.sh and make dev (local/devconfig.py) refuse settings that break it.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import config

DEFAULT_SECONDS = 20.0  # CLAIM_LEASE_SECONDS; renew and margin default to a quarter of it


class BadLease(ValueError):
    """Settings under which a living attempt could lose its claim, or a dead one hold it forever."""


@dataclass(frozen=True, slots=True)
class Lease:
    seconds: float  # CLAIM_LEASE_SECONDS: a claim not renewed this long may be taken over
    renew: float  # CLAIM_RENEW_SECONDS: how often a working attempt renews it
    margin: float  # CLAIM_LEASE_MARGIN_SECONDS: the holder stops acting this long before its lease ends

    @classmethod
    def of(cls, seconds: float, renew: float | None = None, margin: float | None = None) -> Lease:
        """The lease these settings give (None: a quarter of `seconds`); BadLease if it breaks the rule."""
        lease = cls(
            seconds, seconds / 4 if renew is None else renew, seconds / 4 if margin is None else margin
        )
        if not (lease.renew > 0 and lease.margin >= 0 and lease.seconds >= 2 * lease.renew + lease.margin):
            raise BadLease(
                f"CLAIM_LEASE_SECONDS={lease.seconds:g} must be at least 2 x CLAIM_RENEW_SECONDS"
                f" ({lease.renew:g}) + CLAIM_LEASE_MARGIN_SECONDS ({lease.margin:g}), with renewals"
                " more often than never and the margin not negative"
            )
        return lease

    @classmethod
    def from_env(cls) -> Lease:
        renew, margin = config.get("CLAIM_RENEW_SECONDS"), config.get("CLAIM_LEASE_MARGIN_SECONDS")
        return cls.of(
            config.number("CLAIM_LEASE_SECONDS", DEFAULT_SECONDS),
            None if renew is None else config.number("CLAIM_RENEW_SECONDS"),
            None if margin is None else config.number("CLAIM_LEASE_MARGIN_SECONDS"),
        )
