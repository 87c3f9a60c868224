"""Firestore's REST API v1: the few calls we make, without gRPC's import cost.

The official client (google-cloud-firestore, with gRPC and google.api_core) costs the responder
about 165 ms of imports at a cold start, and opens a gRPC channel on first use. What the bot needs
is small: read a document, commit one write (create, fenced update, merge set, with `Increment`,
`ArrayUnion` and field deletes), read several documents, and one equality query (/stats). These
go over one requests.Session per instance, each with its own timeout.

Errors keep the meaning the callers relied on: `Conflict` (the document exists: a refused
`create`), `PreconditionFailed` (the update time given no longer matches) and `NotFound`; anything
else (5xx, 429, a timeout, a refused connection) is a `FirestoreError` that propagates, so Pub/Sub
redelivers, exactly as a google.api_core error did. Against the emulator (FIRESTORE_EMULATOR_HOST)
requests go over plain http with the emulator's `Bearer owner`; otherwise over https to
firestore.googleapis.com with an OAuth access token (common/store/access_token.py), sent nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from common import config
from common.store.access_token import AccessToken
from common.store.firestore_values import DELETE_FIELD, Transform, decode_fields, encode, field_path

API = "https://firestore.googleapis.com/v1"
API_HOST = "firestore.googleapis.com"  # the only host the access token is sent to (https only)
CONNECT_TIMEOUT = 3.05  # seconds
READ_TIMEOUT = 20.0  # seconds


class FirestoreError(Exception):
    """Firestore refused or failed the call (5xx, 429, timeouts too): raised out, so Pub/Sub retries."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"Firestore {status} {code}: {message}")
        self.status, self.code = status, code


class Conflict(FirestoreError):
    """The document already exists (a `create` lost the race), or the write was aborted."""


class PreconditionFailed(FirestoreError):
    """The document changed since the update time the write was conditioned on."""


class NotFound(FirestoreError):
    """The document (or the database) does not exist."""


class TokenRefused(FirestoreError):
    """The access token would have gone to a host other than Firestore's, or over plain http."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        super().__init__(0, "TOKEN_REFUSED", f"no token for {parts.scheme}://{parts.hostname}")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A document as read: `update_time` is the API's RFC 3339 string, for a precondition."""

    exists: bool
    data: dict[str, Any]
    update_time: str = ""  # "" when the document does not exist


class Firestore:
    """One project's `(default)` database; paths are `collection/document`."""

    def __init__(self, project: str, emulator: str | None = None, api: str = API) -> None:
        self.session = requests.Session()
        self.emulator = emulator
        base = f"http://{emulator}/v1" if emulator else api.rstrip("/")
        self.database = f"projects/{project}/databases/(default)"
        self.root = f"{base}/{self.database}/documents"
        self.token = None if emulator else AccessToken(self.session)

    @classmethod
    def from_env(cls) -> Firestore:
        """GOOGLE_CLOUD_PROJECT's database; the emulator when FIRESTORE_EMULATOR_HOST is set."""
        return cls(config.project(), config.get("FIRESTORE_EMULATOR_HOST"))

    # --- reads ------------------------------------------------------------------------------------

    def get(self, path: str, fields: list[str] | None = None) -> Snapshot:
        """1 read (only `fields`, when named); a missing document is a Snapshot with `exists` False."""
        mask = {"mask.fieldPaths": [field_path([name]) for name in fields]} if fields else None
        try:
            document = self._call("GET", f"{self.root}/{path}", params=mask)
        except NotFound:
            return Snapshot(False, {})
        return _snapshot(document)

    def get_all(self, paths: Iterable[str]) -> list[Snapshot]:
        """1 read per document, in one round trip (documents:batchGet), in the order asked."""
        names = [self._name(path) for path in paths]
        if not names:
            return []
        answers = self._call("POST", f"{self.root}:batchGet", {"documents": names})
        found = {a["found"]["name"]: _snapshot(a["found"]) for a in answers if "found" in a}
        return [found.get(name, Snapshot(False, {})) for name in names]

    def where_equal(
        self, collection: str, field: str, value: Any, select: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The data of every document of `collection` whose `field` equals `value` (runQuery)."""
        query: dict[str, Any] = {
            "from": [{"collectionId": collection}],
            "where": {"fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL", "value": encode(value)}},
        }
        if select is not None:
            query["select"] = {"fields": [{"fieldPath": field_path([name])} for name in select]}
        answers = self._call("POST", f"{self.root}:runQuery", {"structuredQuery": query})
        return [decode_fields(a["document"].get("fields", {})) for a in answers if "document" in a]

    # --- writes: one commit each, returning the document's new update time -----------------------

    def create(self, path: str, data: dict[str, Any]) -> str:
        """Write a new document; `Conflict` if it exists (the atomic claim)."""
        return self.commit(self._write(path, data, precondition={"exists": False}))

    def update(self, path: str, data: dict[str, Any], update_time: str) -> str:
        """Replace the top-level fields named in `data`, only if the document's update time is
        still `update_time` (`PreconditionFailed` or `NotFound` otherwise)."""
        precondition = {"updateTime": update_time}
        return self.commit(self._write(path, data, masked=True, precondition=precondition))

    def set(self, path: str, data: dict[str, Any], merge: bool = False) -> str:
        """Write the document whole, or with `merge` only the fields (nested too) named in `data`."""
        return self.commit(self._write(path, data, masked=merge, nested=merge))

    def commit(self, write: dict[str, Any]) -> str:
        """1 write through documents:commit; its update time."""
        answer = self._call("POST", f"{self.root}:commit", {"writes": [write]})
        results = answer.get("writeResults") or [{}]
        return results[0].get("updateTime") or answer["commitTime"]

    def _write(
        self,
        path: str,
        data: dict[str, Any],
        masked: bool = False,
        nested: bool = False,
        precondition: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A Write: the values as `update`, transforms apart. `masked`: only the fields named
        change (the top-level ones, or with `nested` every leaf of a map); a DELETE_FIELD is a
        masked path with no value, so the field is removed. Unmasked: the document is replaced."""
        fields, paths, transforms = _split(data, [], nested, masked)
        write: dict[str, Any] = {"update": {"name": self._name(path), "fields": fields}}
        if masked:
            write["updateMask"] = {"fieldPaths": paths}
        if transforms:
            write["updateTransforms"] = transforms
        if precondition is not None:
            write["currentDocument"] = precondition
        return write

    # --- transport --------------------------------------------------------------------------------

    def _name(self, path: str) -> str:
        return f"{self.database}/documents/{path}"

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None, params: Any = None) -> Any:
        headers = {"Authorization": self._authorization(url)}
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                allow_redirects=False,  # the bearer goes to exactly the URL named
            )
        except requests.RequestException as exc:
            raise FirestoreError(0, "UNAVAILABLE", type(exc).__name__) from exc
        if response.status_code == 200:
            return response.json()
        if response.status_code == 401 and self.token is not None:
            self.token.forget()  # revoked or expired early: the retry fetches a new one
        raise _error(response)

    def _authorization(self, url: str) -> str:
        """The emulator's fixed `owner` (no real token); otherwise the access token, to Firestore's
        host over https only."""
        if self.emulator:
            return "Bearer owner"
        parts = urlsplit(url)
        if parts.scheme != "https" or parts.hostname != API_HOST or self.token is None:
            raise TokenRefused(url)
        return f"Bearer {self.token.get()}"


def _split(
    data: dict[str, Any], prefix: list[str], nested: bool, masked: bool
) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """(encoded fields, their field paths for a mask, field transforms) of a write's data; a
    transformed field stays out of the mask (masked and absent would delete it first)."""
    fields: dict[str, Any] = {}
    paths: list[str] = []
    transforms: list[dict[str, Any]] = []
    for key, value in data.items():
        segments = [*prefix, key]
        if value is DELETE_FIELD:
            if not masked:
                raise TypeError("DELETE_FIELD needs a merge set or an update")
            paths.append(field_path(segments))
        elif isinstance(value, Transform):
            transforms.append(value.encode(field_path(segments)))
        elif nested and isinstance(value, dict) and value:
            inner, inner_paths, inner_transforms = _split(value, segments, nested, masked)
            if inner:
                fields[key] = {"mapValue": {"fields": inner}}
            paths += inner_paths
            transforms += inner_transforms
        else:
            fields[key] = encode(value)
            paths.append(field_path(segments))
    return fields, paths, transforms


def _snapshot(document: dict[str, Any]) -> Snapshot:
    return Snapshot(True, decode_fields(document.get("fields", {})), document.get("updateTime", ""))


def _error(response: requests.Response) -> FirestoreError:
    """Google's error body {"error": {"code", "status", "message"}} as one of our errors."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("status") or "")
    message = str(error.get("message") or response.reason or "")
    status = response.status_code
    if status == 409:  # ALREADY_EXISTS or ABORTED: google.api_core's Conflict
        return Conflict(status, code, message)
    if code == "FAILED_PRECONDITION":
        return PreconditionFailed(status, code, message)
    if status == 404:
        return NotFound(status, code, message)
    return FirestoreError(status, code or "UNKNOWN", message)
