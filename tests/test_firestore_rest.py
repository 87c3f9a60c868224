"""Our REST Firestore client against the real emulator, cross-checked with the official client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.cloud import firestore

from common.store.firestore_rest import (
    Conflict,
    Firestore,
    FirestoreError,
    NotFound,
    PreconditionFailed,
)
from common.store.firestore_values import DELETE_FIELD, ArrayUnion, Increment
from local import emulators as emu
from tests.conftest import PROJECT
from tests.support.fakes import FakeGraph

MOMENT = datetime(2026, 11, 26, 15, 4, 5, 123456, tzinfo=UTC)
EVERY_KIND: dict[str, Any] = {
    "none": None,
    "yes": True,
    "no": False,
    "count": 42,
    "big": -(2**62),  # beyond a double's exact range: must travel as an integer string
    "ratio": 1.5,
    "when": MOMENT,
    "text": "héllo, wörld ✓",
    "empty": "",
    "raw": b"\x00\xffbytes",
    "list": [1, "a", None, 2.5, {"x": MOMENT, "inner": [2]}],  # no array directly in an array
    "map": {"nested": {"deep": [True]}, "0f3a": "a key that is no identifier", "with space": 1},
    "emptyMap": {},
    "emptyList": [],
}


@pytest.fixture
def rest(db: firestore.Client, emulators: emu.Emulators) -> Iterator[Firestore]:
    """Our client on the emulator `db` (the official client) has just wiped."""
    client = Firestore(PROJECT, emulators.firestore.address)
    yield client
    client.session.close()


def official(db: firestore.Client, path: str) -> dict[str, Any] | None:
    return db.document(path).get().to_dict()


def test_every_kind_of_value_reads_back_the_same_through_the_official_client(
    rest: Firestore, db: firestore.Client
) -> None:
    rest.create("kinds/ours", EVERY_KIND)
    assert official(db, "kinds/ours") == EVERY_KIND
    db.document("kinds/theirs").set(EVERY_KIND)
    snapshot = rest.get("kinds/theirs")
    assert snapshot.exists and snapshot.data == EVERY_KIND
    assert snapshot.data["when"].tzinfo is not None


def test_a_timestamp_in_another_zone_is_the_same_instant(rest: Firestore, db: firestore.Client) -> None:
    local = MOMENT.astimezone(timezone(timedelta(hours=-5)))
    rest.set("kinds/zoned", {"when": local})
    assert official(db, "kinds/zoned") == {"when": MOMENT}
    assert rest.get("kinds/zoned").data["when"] == MOMENT


def test_a_read_of_named_fields_brings_only_those(rest: Firestore, db: firestore.Client) -> None:
    db.document("conversations/w").set({"voice": "on", "turns": ["long", "history"], "0f": 1})
    assert rest.get("conversations/w", fields=["voice", "0f"]).data == {"voice": "on", "0f": 1}
    assert rest.get("conversations/none", fields=["voice"]).data == {}


def test_a_missing_document_does_not_exist(rest: Firestore) -> None:
    snapshot = rest.get("nothing/here")
    assert (snapshot.exists, snapshot.data, snapshot.update_time) == (False, {}, "")


def test_create_refuses_an_existing_document(rest: Firestore, db: firestore.Client) -> None:
    first = rest.create("claims/one", {"token": "first"})
    assert first == rest.get("claims/one").update_time
    with pytest.raises(Conflict):
        rest.create("claims/one", {"token": "second"})
    assert official(db, "claims/one") == {"token": "first"}


def test_update_is_fenced_by_the_update_time(rest: Firestore, db: firestore.Client) -> None:
    first = rest.create("claims/two", {"state": "working", "partsSent": 0, "token": "a"})
    second = rest.update("claims/two", {"partsSent": 1}, first)
    assert second != first
    assert official(db, "claims/two") == {"state": "working", "partsSent": 1, "token": "a"}
    with pytest.raises(PreconditionFailed):
        rest.update("claims/two", {"state": "done"}, first)  # stale: another attempt wrote since
    db.document("claims/two").update({"token": "b"})  # a write by someone else moves it too
    with pytest.raises(PreconditionFailed):
        rest.update("claims/two", {"state": "done"}, second)
    assert official(db, "claims/two") == {"state": "working", "partsSent": 1, "token": "b"}


def test_update_of_a_vanished_document_changes_nothing(rest: Firestore, db: firestore.Client) -> None:
    version = rest.create("claims/three", {"state": "working"})
    db.document("claims/three").delete()
    with pytest.raises((PreconditionFailed, NotFound)):
        rest.update("claims/three", {"state": "done"}, version)
    assert official(db, "claims/three") is None


def test_merge_set_keeps_other_fields_and_transforms_apply(rest: Firestore, db: firestore.Client) -> None:
    db.document("conversations/u").set({"keep": "me", "usageTurns": 1, "turns": [{"content": "a"}]})
    for _ in range(2):
        rest.set(
            "conversations/u",
            {
                "usageTurns": Increment(1),
                "usageAudio": Increment(2.5),
                "turns": ArrayUnion([{"content": "b"}, {"content": "a"}]),
                "expireAt": MOMENT,
            },
            merge=True,
        )
    assert official(db, "conversations/u") == {
        "keep": "me",
        "usageTurns": 3,
        "usageAudio": 5.0,
        "turns": [{"content": "a"}, {"content": "b"}],  # ArrayUnion adds only what is missing
        "expireAt": MOMENT,
    }


def test_a_fenced_update_with_increments_adds_to_the_counters(rest: Firestore, db: firestore.Client) -> None:
    """The trimming write of the history: turns replaced, counters incremented, nothing else lost."""
    version = rest.create("conversations/v", {"turns": [1, 2, 3], "usageTokens": 10, "resetBy": "x"})
    rest.update("conversations/v", {"turns": [3, 4], "usageTokens": Increment(5)}, version)
    assert official(db, "conversations/v") == {"turns": [3, 4], "usageTokens": 15, "resetBy": "x"}


def test_merge_set_reaches_into_maps_and_deletes_a_field(rest: Firestore, db: firestore.Client) -> None:
    user, other = "0f3a9b", "with.dot`tick"  # segments that must be back-quoted in a field path
    rest.set("controls/pause", {"users": {user: MOMENT}}, merge=True)
    rest.set("controls/pause", {"users": {other: MOMENT}, "all": None}, merge=True)
    assert official(db, "controls/pause") == {"users": {user: MOMENT, other: MOMENT}, "all": None}
    rest.set("controls/pause", {"users": {user: DELETE_FIELD}}, merge=True)
    assert official(db, "controls/pause") == {"users": {other: MOMENT}, "all": None}


def test_set_without_merge_replaces_the_document(rest: Firestore, db: firestore.Client) -> None:
    db.document("controls/pause").set({"all": MOMENT, "users": {"a": MOMENT}})
    rest.set("controls/pause", {})
    assert official(db, "controls/pause") == {}


def test_get_all_reads_several_documents_in_order(rest: Firestore, db: firestore.Client) -> None:
    db.document("budget/d-0").set({"tokens": 5})
    db.document("budget/d-2").set({"tokens": 7})
    found = rest.get_all(["budget/d-0", "budget/d-1", "budget/d-2"])
    assert [(s.exists, s.data) for s in found] == [(True, {"tokens": 5}), (False, {}), (True, {"tokens": 7})]
    assert rest.get_all([]) == []


def test_an_equality_query_returns_the_selected_fields(rest: Firestore, db: firestore.Client) -> None:
    db.document("conversations/a").set({"usageDay": "2026-11-26", "usageTurns": 2, "turns": ["x"]})
    db.document("conversations/b").set({"usageDay": "2026-11-26", "usageTokens": 9})
    db.document("conversations/c").set({"usageDay": "2026-11-25", "usageTurns": 5})
    found = rest.where_equal("conversations", "usageDay", "2026-11-26", select=["usageTurns", "usageTokens"])
    assert sorted(found, key=str) == [{"usageTokens": 9}, {"usageTurns": 2}]
    assert rest.where_equal("conversations", "usageDay", "1999-01-01") == []


def test_a_server_failure_is_an_error_that_is_none_of_the_handled_ones() -> None:
    """A 503 (and a refused connection) propagates: Pub/Sub redelivers, as with google.api_core."""
    server = FakeGraph()  # any loopback server: it answers what it is told to
    try:
        server.fail("/v1/", 503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}})
        client = Firestore(PROJECT, server.url.removeprefix("http://"))
        with pytest.raises(FirestoreError) as failed:
            client.get("claims/x")
        assert type(failed.value) is FirestoreError and failed.value.status == 503
        assert server.requests[0].headers["Authorization"] == "Bearer owner"  # the emulator's, no token
    finally:
        server.close()
    nobody = Firestore(PROJECT, f"127.0.0.1:{emu.free_port()}")  # nothing listens there
    with pytest.raises(FirestoreError) as refused:
        nobody.create("claims/x", {})
    assert type(refused.value) is FirestoreError and refused.value.code == "UNAVAILABLE"
