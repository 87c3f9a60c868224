"""What one action round adds to a responder turn, beyond the business endpoint's own time.

Three warm responders, the push body POSTed straight to each (as `pipeline.responder_turn`), to the
reply at the Graph stand-in, messages interleaved: `plain` (no ACTIONS_FILE: the plain model call),
`tools` (ACTIONS_FILE set, the model answers in words: what offering tools costs) and `action`
(the model calls order_status once, then answers: the call, its stored result, a second model
call). The endpoint's own time is what the loopback business spent per request (measured in its
handler) and is subtracted. The model stand-in answers at once, so its time is not in the figure
beyond the second round trip.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench.load import percentile
from bench.pipeline import replied
from common.bus.envelope import Envelope
from common.bus.events import event_for
from local.example_business import DEFAULT_TOKEN
from local.functions import serve
from tests.support.business import FakeBusiness
from tests.support.fakes import Answer, FakeGraph, FakeOpenAI, Recorded
from tests.support.tool_model import calling, last

MESSAGES, WARM_UP = 60, 5
NUMBER = "106540352242922"
ACTIONS = """actions:
  - name: order_status
    description: Look up an order by its number.
    url: ${SHOP_URL}/orders/status
    parameters: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
    token_env: SHOP_TOKEN
"""


class TimedBusiness(FakeBusiness):
    """The loopback business, timing its own handling of each request (the endpoint's time)."""

    def __init__(self) -> None:
        self.spent: list[float] = []
        super().__init__()

    def route(self, request: Recorded) -> Answer:
        started = time.perf_counter()
        try:
            return super().route(request)
        finally:
            self.spent.append((time.perf_counter() - started) * 1000)


def answer(messages: list[dict[str, Any]]) -> Any:
    if last(messages).get("role") == "tool":
        return "Order A1001: " + json.loads(messages[-1]["content"])["data"]["status"]
    said = str(last(messages).get("content") or "")
    return calling(("order_status", {"order_id": "A1001"})) if said.startswith("order") else "hello"


def measure(env: dict[str, str], graph: FakeGraph, model: FakeOpenAI, folder: Path) -> dict[str, Any]:
    business, actions = TimedBusiness(), folder / "actions.yaml"
    actions.write_text(ACTIONS)
    with_actions = {
        **env,
        "ACTIONS_FILE": str(actions),
        "SHOP_URL": business.url,
        "SHOP_TOKEN": DEFAULT_TOKEN,
    }
    cases = {
        "plain": (env, "hello"),
        "tools": (with_actions, "hello"),
        "action": (with_actions, "order A1001?"),
    }
    model.answer = answer
    functions, values = {}, {name: [] for name in cases}
    session = requests.Session()
    try:
        for name, (settings, _) in cases.items():
            functions[name] = serve("responder", settings)
        for index in range(MESSAGES + WARM_UP):
            names = list(cases)[index % 3 :] + list(cases)[: index % 3]
            for name in names:
                message_id, user = f"wamid.act{uuid.uuid4().hex}", f"1777{index % 50:07d}"
                item = Envelope(message_id, user, user, NUMBER, "text", int(time.time()), cases[name][1])
                done = replied(graph, message_id)
                started = time.perf_counter()
                status = session.post(functions[name].url, json=event_for(item), timeout=30).status_code
                if not done.wait(30) or status >= 300:
                    raise RuntimeError(f"{name}: no reply ({status})")
                if index >= WARM_UP:
                    values[name].append((time.perf_counter() - started) * 1000)
    finally:
        for function in functions.values():
            function.stop()
        business.close()
    result: dict[str, Any] = {"messages": MESSAGES}
    for name, measured in values.items():
        result[name] = {
            "p50_ms": round(statistics.median(measured), 1),
            "p95_ms": round(percentile(measured, 0.95), 1),
        }
    endpoint = round(statistics.median(business.spent), 2)
    result["endpoint_p50_ms"] = endpoint
    result["round_p50_ms"] = round(result["action"]["p50_ms"] - result["tools"]["p50_ms"] - endpoint, 1)
    result["tools_p50_ms"] = round(result["tools"]["p50_ms"] - result["plain"]["p50_ms"], 1)
    return result
