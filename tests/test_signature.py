"""The X-Hub-Signature-256 check on raw bytes."""

from __future__ import annotations

import hashlib
import hmac

from common.meta.signature import Verdict, sign, verify

BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def test_sign_is_hmac_sha256_hex_with_prefix() -> None:
    expected = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, "s3cret") == f"sha256={expected}"


def test_verdicts() -> None:
    good = sign(BODY, "s3cret")
    assert verify(BODY, good, "s3cret") is Verdict.VALID
    assert verify(BODY, None, "s3cret") is Verdict.MISSING
    assert verify(BODY, "", "s3cret") is Verdict.MISSING
    assert verify(BODY, good, "other") is Verdict.MISMATCH
    assert verify(BODY + b" ", good, "s3cret") is Verdict.MISMATCH
    assert verify(BODY, good.removeprefix("sha256="), "s3cret") is Verdict.MISMATCH
    assert verify(BODY, "sha256=é", "s3cret") is Verdict.MISMATCH  # non-ASCII must not crash
