"""Firestore's access token: from a (loopback) metadata server, cached, refreshed, sent nowhere else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from requests.adapters import HTTPAdapter

from common.store.access_token import REFRESH_MARGIN, AccessToken, TokenUnavailable
from common.store.firestore_rest import Firestore, FirestoreError, TokenRefused
from local.emulators import free_port
from tests.support.fakes import Answer, FakeMetadata, FakeServer, Recorded

PROJECT = "whatsbot-token-test"


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMetadata]:
    """A metadata server on loopback, named by GCE_METADATA_HOST as google-auth also reads it."""
    server = FakeMetadata()
    monkeypatch.setenv("GCE_METADATA_HOST", server.host)
    yield server
    server.close()


class FakeFirestore(FakeServer):
    """Answers every read with an empty document, and records who sent what."""

    def route(self, request: Recorded) -> Answer:
        return Answer(200, {"name": "x", "fields": {}, "updateTime": "2026-11-26T00:00:00Z"})


class Loopback(HTTPAdapter):
    """The network's stand-in: requests for firestore.googleapis.com reach a loopback server."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        request.url = (request.url or "").replace("https://firestore.googleapis.com", self.target, 1)
        return super().send(request, **kwargs)  # type: ignore[arg-type]


def test_the_token_is_fetched_with_the_metadata_header_and_cached(metadata: FakeMetadata) -> None:
    token = AccessToken(requests.Session())
    assert token.get() == "ya29.metadata-1"
    assert token.get() == "ya29.metadata-1"  # an hour's token: no second request
    (asked,) = metadata.token_requests()
    assert asked.method == "GET" and asked.headers["Metadata-Flavor"] == "Google"
    assert "Authorization" not in asked.headers


def test_a_token_about_to_expire_is_fetched_again(metadata: FakeMetadata) -> None:
    metadata.expires_in = int(REFRESH_MARGIN) - 1  # already inside the refresh margin
    token = AccessToken(requests.Session())
    assert [token.get(), token.get()] == ["ya29.metadata-1", "ya29.metadata-2"]
    metadata.expires_in = 3599
    assert [token.get(), token.get()] == ["ya29.metadata-3", "ya29.metadata-3"]
    assert len(metadata.token_requests()) == 3


def test_a_server_that_is_no_metadata_server_gives_no_token(metadata: FakeMetadata) -> None:
    metadata.flavor = ""  # answers, but without `Metadata-Flavor: Google`
    with pytest.raises(TokenUnavailable):
        AccessToken(requests.Session()).get()


def test_without_a_metadata_server_the_developers_adc_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No metadata server answers: google-auth's ADC (here a throwaway service-account key whose
    token endpoint is on loopback) is asked instead, once per token lifetime."""
    oauth = FakeMetadata()
    try:
        monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        adc = tmp_path / "adc.json"
        adc.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "test-key",
                    "private_key": pem,
                    "client_email": f"bot@{PROJECT}.iam.gserviceaccount.com",
                    "token_uri": f"{oauth.url}/token",
                }
            )
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        token = AccessToken(requests.Session())
        assert token.get() == "ya29.adc-1"
        assert token.get() == "ya29.adc-1"
        (grant,) = oauth.requests
        assert (
            grant.method == "POST"
            and b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in grant.body
        )
    finally:
        oauth.close()


@pytest.fixture
def firestore() -> Iterator[FakeFirestore]:
    server = FakeFirestore()
    yield server
    server.close()


def client_of(firestore: FakeFirestore) -> Firestore:
    """Our client for the real API's URL, whose requests the loopback server answers."""
    client = Firestore(PROJECT)
    client.session.mount("https://firestore.googleapis.com/", Loopback(firestore.url))
    return client


def test_the_token_goes_to_firestore_over_https(metadata: FakeMetadata, firestore: FakeFirestore) -> None:
    assert client_of(firestore).get("claims/x").exists
    (read,) = firestore.requests
    assert read.path == f"/v1/projects/{PROJECT}/databases/(default)/documents/claims/x"
    assert read.headers["Authorization"] == "Bearer ya29.metadata-1"


def test_a_refused_token_is_replaced_on_the_next_call(
    metadata: FakeMetadata, firestore: FakeFirestore
) -> None:
    client = client_of(firestore)
    unauthenticated = {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "expired"}}
    firestore.fail("/v1/", 401, unauthenticated)
    with pytest.raises(FirestoreError) as refused:
        client.get("claims/x")  # raised out: Pub/Sub redelivers
    assert refused.value.status == 401
    assert client.get("claims/x").exists
    tokens = [r.headers["Authorization"] for r in firestore.requests]
    assert tokens == ["Bearer ya29.metadata-1", "Bearer ya29.metadata-2"]


@pytest.mark.parametrize(
    "api",
    [
        "http://firestore.googleapis.com/v1",  # plain http
        "https://firestore.googleapis.com.example.net/v1",  # a look-alike host
        "https://example.net/v1",
        "LOOPBACK",  # a server of our own, over plain http
    ],
)
def test_the_token_is_never_sent_elsewhere(
    metadata: FakeMetadata, firestore: FakeFirestore, api: str
) -> None:
    client = Firestore(PROJECT, api=firestore.url + "/v1" if api == "LOOPBACK" else api)
    with pytest.raises(TokenRefused):
        client.get("claims/x")
    assert firestore.requests == []
    assert metadata.token_requests() == []  # refused before a token is even fetched
