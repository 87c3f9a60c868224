"""make dev with the example actions: the offline model calls the example business, the simulator's
buttons are tapped (a real button_reply webhook), and a handoff shows in the admin's chat."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from common.actions.handoff import DEFAULT_TEXT
from local import dev
from local.cli import send, session_headers
from local.devconfig import SIMULATOR_ADMIN
from local.offline_model import LABEL

ANY_PORT = {name: "0" for name in dev.PORTS}


@pytest.fixture(scope="module")
def stack() -> Iterator[dev.Stack]:
    try:
        stack = dev.start_stack(ANY_PORT, open("/dev/null", "w"))  # noqa: SIM115 - the stack's console
    except dev.DevError as exc:
        pytest.fail(f"make dev could not start: {exc}", pytrace=False)
    yield stack
    stack.stop()


def tap(stack: dev.Stack, user: str, reply_id: str, context_id: str, wait: float) -> dict[str, Any]:
    body = {"user": user, "reply_id": reply_id, "context_id": context_id}
    url = f"{stack.simulator_url}api/messages"
    headers = session_headers(stack.simulator_url)
    answer = requests.post(url, params={"wait": str(wait)}, json=body, headers=headers, timeout=wait + 30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def conversation(stack: dev.Stack, user: str) -> list[dict[str, Any]]:
    state = requests.get(f"{stack.simulator_url}api/state", timeout=5).json()
    return [m for m in state["messages"] if m["user"] == user]


def test_the_offline_model_looks_an_order_up_at_the_example_business(stack: dev.Stack) -> None:
    (reply,) = send(stack.simulator_url, "15550000011", text="what is the order status of A1001?")["replies"]
    assert reply["text"].startswith(f"{LABEL} The action order_status answered")
    assert '"status": "shipped"' in reply["text"]


def test_a_booking_asks_with_buttons_and_a_double_tap_books_once(stack: dev.Stack) -> None:
    user = "15550000012"
    (question,) = send(stack.simulator_url, user, text="book table 2026-05-01 19:30 for 2")["replies"]
    assert (
        question["type"] == "interactive" and question["text"] == "Book a table for 2 on 2026-05-01 at 19:30?"
    )
    yes, _no = (b["reply"]["id"] for b in question["extra"]["interactive"]["action"]["buttons"])
    (booked,) = tap(stack, user, yes, question["id"], wait=30)["replies"]
    assert "The action book_table answered" in booked["text"] and '"booking_id": "B-' in booked["text"]
    again = tap(stack, user, yes, question["id"], wait=3)
    assert again["replies"] == [] and again["timed_out"]  # the second tap: silent, no second booking


def test_a_handoff_reaches_the_admins_chat_and_their_reply_reaches_the_user(stack: dev.Stack) -> None:
    user = "15550000013"
    (handed,) = send(stack.simulator_url, user, text="/human", name="Dana")["replies"]
    assert handed["text"] == DEFAULT_TEXT
    told = [m["text"] for m in conversation(stack, SIMULATOR_ADMIN) if m["sender"] == "bot"]
    assert any(t.startswith(f"Dana ({user}) asks for a person") for t in told), told
    (sent,) = send(stack.simulator_url, SIMULATOR_ADMIN, text=f"/reply {user} Hello Dana, Sam here.")[
        "replies"
    ]
    assert sent["text"] == f"Sent to Dana ({user})."
    assert conversation(stack, user)[-1]["text"] == "Hello Dana, Sam here."
    (resumed,) = send(stack.simulator_url, SIMULATOR_ADMIN, text=f"/resume {user}")["replies"]
    assert resumed["text"] == f"Resumed: the bot answers Dana ({user}) again."
    (answered,) = send(stack.simulator_url, user, text="thanks")["replies"]
    assert answered["text"].startswith(LABEL)
