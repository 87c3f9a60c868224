"""The history budget: oldest turns go first, the newest always stays."""

from __future__ import annotations

from common.store.history import Budget


def turns(n: int, size: int = 10) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i) * size} for i in range(n)]


def test_turn_limit_drops_the_oldest() -> None:
    kept = Budget(max_turns=4, max_chars=10_000).trim(turns(10))
    assert [t["content"][0] for t in kept] == ["6", "7", "8", "9"]


def test_character_limit_drops_the_oldest_and_starts_with_the_user() -> None:
    kept = Budget(max_turns=100, max_chars=35).trim(turns(10))
    assert [t["content"][0] for t in kept] == ["8", "9"]
    assert kept[0]["role"] == "user"


def test_the_newest_turn_survives_any_budget() -> None:
    kept = Budget(max_turns=100, max_chars=5).trim(turns(3, size=50))
    assert kept == turns(3, size=50)[-1:]


def test_a_tight_budget_never_keeps_a_lone_assistant_turn() -> None:
    exchange = [{"role": "user", "content": "u" * 50}, {"role": "assistant", "content": "a" * 50}]
    kept = Budget(max_turns=100, max_chars=60).trim([*turns(4), *exchange])
    assert kept == exchange  # the newest exchange whole, even over the budget
    assert Budget(max_turns=1, max_chars=10_000).trim(exchange) == exchange


def test_what_is_kept_starts_with_a_user_turn() -> None:
    kept = Budget(max_turns=3, max_chars=10_000).trim(turns(6))
    assert [t["content"][0] for t in kept] == ["4", "5"]
