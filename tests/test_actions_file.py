"""ACTIONS_FILE: checked at start with an error naming the action and the problem; the tools the
model sees; arguments checked against each action's JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.actions import spec
from common.actions.spec import ActionsFileError, InvalidCall

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "actions.yaml"
ENV = {"EXAMPLE_BUSINESS_URL": "http://127.0.0.1:8092", "EXAMPLE_BUSINESS_TOKEN": "t0ken"}
GOOD = {
    "name": "order_status",
    "description": "Look up an order.",
    "url": "https://shop.example.com/api/order-status",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
}


def write(tmp_path: Path, *actions: dict[str, object]) -> Path:
    path = tmp_path / "actions.yaml"
    path.write_text(json.dumps({"actions": list(actions)}))  # JSON is YAML
    return path


def test_the_example_file_loads_with_its_tokens_and_urls_from_the_environment() -> None:
    catalog = spec.load(EXAMPLE, env=ENV)
    assert list(catalog.actions) == ["order_status", "book_table", "booking_details"]
    order = catalog.actions["order_status"]
    assert order.url == "http://127.0.0.1:8092/orders/status"
    assert order.token == "t0ken" and "t0ken" not in repr(order)
    assert catalog.actions["book_table"].confirm and catalog.actions["booking_details"].method == "GET"


def test_the_tools_hold_only_names_descriptions_and_schemas_and_the_handoff_when_offered() -> None:
    tools = spec.load(EXAMPLE, env=ENV).tools()
    assert [t["function"]["name"] for t in tools] == ["order_status", "book_table", "booking_details"]
    assert all(set(t["function"]) == {"name", "description", "parameters"} for t in tools)
    assert "127.0.0.1" not in json.dumps(tools) and "t0ken" not in json.dumps(tools)
    with_handoff = spec.load(EXAMPLE, handoff=True, env=ENV).tools()
    assert with_handoff[-1]["function"]["name"] == "handoff"
    assert spec.load(None, handoff=True).tools() == [spec.HANDOFF_TOOL]
    assert not spec.load(None)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"url": "http://shop.example.com/x"}, "action 'order_status': url must be https"),
        ({"url": "ftp://127.0.0.1/x"}, "url must be https"),
        ({"url": "https://user:pw@shop.example.com/x"}, "must not hold a user or password"),
        ({"url": "${NOT_SET_ANYWHERE}/x"}, "url names ${NOT_SET_ANYWHERE}, which is not set"),
        ({"token_env": "SHOP_TOKEN_NOT_SET"}, "token_env SHOP_TOKEN_NOT_SET is not set"),
        ({"method": "DELETE"}, "method must be POST or GET"),
        ({"parameters": {"type": "object", "properties": {"n": {"type": 3}}}}, "not a valid JSON Schema"),
        ({"parameters": {"type": "string"}}, "parameters must be a JSON Schema of `type: object`"),
        ({"confirmation": True}, "unknown key confirmation"),
        ({"confirm": "yes"}, "confirm must be true or false"),
        ({"confirm_text": "Book {seats}?"}, "confirm_text names seats, not among the parameters"),
        ({"description": ""}, "description is required"),
        ({"name": "order status"}, "action #1: name must be"),
        ({"name": "handoff"}, "action 'handoff': the name is built in"),
    ],
)
def test_a_bad_action_stops_the_start_with_its_name_and_the_problem(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    with pytest.raises(ActionsFileError, match="ACTIONS_FILE") as caught:
        spec.load(write(tmp_path, {**GOOD, **change}), env={})
    assert expected in str(caught.value)


def test_a_file_level_problem_is_named_too(tmp_path: Path) -> None:
    twice = write(tmp_path, GOOD, GOOD)
    with pytest.raises(ActionsFileError, match="action 'order_status': the name is used twice"):
        spec.load(twice, env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("actions:\n  - name: [unclosed\n")
    with pytest.raises(ActionsFileError, match="not valid YAML at line"):
        spec.load(bad, env={})
    bad.write_text("- name: x\n")
    with pytest.raises(ActionsFileError, match="must hold `actions:`"):
        spec.load(bad, env={})
    with pytest.raises(ActionsFileError, match="cannot be read"):
        spec.load(tmp_path / "missing.yaml", env={})


def test_plain_http_is_allowed_on_this_machine_only() -> None:
    for url in ("http://127.0.0.1:9/x", "http://[::1]:9/x", "http://localhost/x", "https://a.example/x"):
        assert spec.url_problem(url) is None, url
    for url in ("http://10.0.0.1/x", "http://169.254.169.254/x", "http://localhost.example.com/x"):
        assert spec.url_problem(url), url


def test_arguments_are_checked_against_the_schema_with_a_reason_the_model_can_use() -> None:
    catalog = spec.load(EXAMPLE, handoff=True, env=ENV)
    assert catalog.check("order_status", '{"order_id": "A1001"}') == {"order_id": "A1001"}
    cases = {
        ("order_status", '{"order_id": 1001}'): "order_id: 1001 is not of type 'string'",
        ("order_status", "{}"): "arguments: 'order_id' is a required property",
        ("order_status", '{"order_id": "A1", "x": 1}'): "Additional properties are not allowed",
        ("order_status", '{"order_id": '): "the arguments are not valid JSON",
        ("order_status", '["A1001"]'): "must be a JSON object",
        ("book_table", '{"date": "soon", "time": "19:30", "people": 2}'): "date: 'soon' does not match",
        ("refund_everything", "{}"): "there is no action named 'refund_everything'",
        ("handoff", "{}"): "'reason' is a required property",
    }
    for (name, raw), reason in cases.items():
        with pytest.raises(InvalidCall) as caught:
            catalog.check(name, raw)
        assert reason in str(caught.value), (name, raw, str(caught.value))


def test_the_confirmation_question_says_what_will_be_done() -> None:
    catalog = spec.load(EXAMPLE, env=ENV)
    book = catalog.actions["book_table"]
    asked = book.question({"date": "2026-05-01", "time": "19:30", "people": 2})
    assert asked == "Book a table for 2 on 2026-05-01 at 19:30?"
    plain = spec.Action("cancel", "Cancel an order.", "https://a.example/c")
    assert plain.question({"order_id": "A1"}) == "Cancel an order.\norder_id: A1\nShall I go ahead?"
