"""An OAuth access token for Firestore: the metadata server's on Google Cloud, else the developer's ADC.

On Cloud Run (and GCE) the instance's service account has a token at the metadata server, one
plain GET away (`Metadata-Flavor: Google`, answered with the same header); GCE_METADATA_HOST
points elsewhere, as it does for google-auth (a test's loopback metadata server). Where no
metadata server answers (a developer's machine), google-auth's Application Default Credentials
are asked instead: imported only then, so an instance on Google Cloud never loads it. The token
is kept until REFRESH_MARGIN seconds before it expires. It is never logged.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import requests

METADATA_HOST = "metadata.google.internal"
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"  # noqa: S105 - a path
SCOPES = ["https://www.googleapis.com/auth/datastore"]  # for ADC; the instance's token has its own
REFRESH_MARGIN = 60.0  # seconds before expiry a token is replaced
METADATA_TIMEOUT = (1.0, 5.0)  # (connect, read) seconds


class TokenUnavailable(Exception):
    """No access token could be had (the metadata server failed): retried like any outage."""


class AccessToken:
    """One token per instance, shared by its threads, fetched again shortly before it expires."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._token = ""
        self._renew_at = float("-inf")  # time.monotonic() at which the token must be replaced
        self._adc: Any = None  # google-auth credentials, once no metadata server answered
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if time.monotonic() >= self._renew_at:
                token, lifetime = self._fetch()
                self._token, self._renew_at = token, time.monotonic() + lifetime - REFRESH_MARGIN
            return self._token

    def forget(self) -> None:
        """Firestore refused the token (401): fetch a new one on the next call."""
        with self._lock:
            self._renew_at = float("-inf")

    def _fetch(self) -> tuple[str, float]:
        """(token, seconds it stays valid)."""
        if self._adc is None:
            host = os.environ.get("GCE_METADATA_HOST") or METADATA_HOST
            try:
                response = self.session.get(
                    f"http://{host}{TOKEN_PATH}",
                    headers={"Metadata-Flavor": "Google"},
                    timeout=METADATA_TIMEOUT,
                    allow_redirects=False,
                )
            except requests.ConnectionError:  # no metadata server here (connect timeouts too)
                self._adc = _default_credentials()
            except requests.RequestException as exc:
                raise TokenUnavailable(f"metadata server: {type(exc).__name__}") from exc
            else:
                return _from_metadata(response)
        return _from_adc(self._adc, self.session)


def _from_metadata(response: requests.Response) -> tuple[str, float]:
    if response.status_code != 200 or response.headers.get("Metadata-Flavor") != "Google":
        raise TokenUnavailable(f"metadata server answered {response.status_code}")
    body = response.json()
    return str(body["access_token"]), float(body.get("expires_in") or 0)


def _default_credentials() -> Any:
    """Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file)."""
    import google.auth

    credentials, _ = google.auth.default(scopes=SCOPES)
    return credentials


def _from_adc(credentials: Any, session: requests.Session) -> tuple[str, float]:
    from google.auth.transport.requests import Request

    credentials.refresh(Request(session))
    expiry = credentials.expiry  # naive UTC, or None when unknown
    lifetime = (expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() if expiry else 3600.0
    return str(credentials.token), lifetime
