"""A business's own questions run through the bot's retrieval and model, scored before going live.

A cases file is JSON: {"knowledge": "folder", "cases": [...]} (or the list alone), each case
    {"name": "saturday", "question": "When are you open on Saturday?",
     "turns": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "sources": ["Opening hours"], "facts": ["9:00", ["17:00", "5 pm"]]}
or {"question": "Do you sell cars?", "abstain": true}. A case passes when every expected source
title is among the passages retrieved and every fact (a text, or a list of alternatives) is in
the reply, case and spacing ignored; an abstaining case passes when no passage cleared the
threshold (so the model was told it has no information). The turns are earlier messages, as the
history would hold them. Each case makes the turn's calls: 1 embeddings request, 1 vector query,
1 chat completion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.knowledge.retrieval import Knowledge

Ask = Callable[[str, list[dict[str, str]], str, float], str]  # (system, turns, question, deadline)


class BadCases(Exception):
    """The cases file cannot be used; str() says where."""


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    question: str
    turns: tuple[dict[str, str], ...] = ()
    sources: tuple[str, ...] = ()
    facts: tuple[tuple[str, ...], ...] = ()  # each: its alternatives
    abstain: bool = False


@dataclass
class Outcome:
    case: Case
    retrieved: list[str]  # titles, best first
    reply: str
    missing_sources: list[str] = field(default_factory=list)
    missing_facts: list[str] = field(default_factory=list)
    abstained: bool = False

    @property
    def passed(self) -> bool:
        if self.case.abstain:
            return self.abstained
        return not (self.abstained or self.missing_sources or self.missing_facts)

    def line(self) -> str:
        """One line: PASS/FAIL, the name, and what was checked."""
        case, checks = self.case, []
        if case.abstain:
            checks.append(
                "abstained" if self.abstained else f"did not abstain (found: {', '.join(self.retrieved)})"
            )
        else:
            if self.abstained:
                checks.append("no passage found")
            if case.sources:
                missing = f" missing {', '.join(self.missing_sources)}" if self.missing_sources else " ok"
                checks.append(f"sources{missing}")
            if case.facts:
                found = len(case.facts) - len(self.missing_facts)
                missing = (
                    f" missing {', '.join(repr(f) for f in self.missing_facts)}" if self.missing_facts else ""
                )
                checks.append(f"facts {found}/{len(case.facts)}{missing}")
        return f"{'PASS' if self.passed else 'FAIL'}  {case.name}: {'; '.join(checks) or 'answered'}"


def load(path: Path) -> tuple[list[Case], Path | None]:
    """The cases, and the knowledge folder the file names (relative to the file), if any."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadCases(f"{path}: {exc}") from exc
    folder = None
    if isinstance(data, dict):
        folder = (
            (path.parent / data["knowledge"]).resolve() if isinstance(data.get("knowledge"), str) else None
        )
        data = data.get("cases")
    if not isinstance(data, list) or not data:
        raise BadCases(f"{path}: expected a list of cases, or {{'cases': [...]}}")
    return [_case(item, index, path) for index, item in enumerate(data, 1)], folder


def _case(item: Any, index: int, path: Path) -> Case:
    where = f"{path}, case {index}"
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("question"), str)
        or not item["question"].strip()
    ):
        raise BadCases(f"{where}: a case needs a 'question'")
    turns = item.get("turns") or []
    if not isinstance(turns, list) or not all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
        for t in turns
    ):
        raise BadCases(f"{where}: 'turns' are {{'role': 'user'|'assistant', 'content': '...'}}")
    sources = item.get("sources") or []
    facts = [[f] if isinstance(f, str) else f for f in item.get("facts") or []]
    if not all(isinstance(s, str) for s in sources) or not all(
        isinstance(f, list) and f and all(isinstance(a, str) for a in f) for f in facts
    ):
        raise BadCases(f"{where}: 'sources' are titles, 'facts' texts or lists of alternative texts")
    abstain = bool(item.get("abstain"))
    if abstain and (sources or facts):
        raise BadCases(f"{where}: a case that should abstain expects no sources or facts")
    return Case(
        str(item.get("name") or f"case {index}"),
        item["question"].strip(),
        tuple({"role": t["role"], "content": t["content"]} for t in turns),
        tuple(sources),
        tuple(tuple(f) for f in facts),
        abstain,
    )


def run_case(case: Case, knowledge: Knowledge, ask: Ask, system_prompt: str, seconds: float = 120) -> Outcome:
    """The case as one turn: retrieval from its turns and question, the model asked, the reply cited."""
    deadline = time.monotonic() + seconds
    turns = list(case.turns)
    grounding = knowledge.retrieve(turns, case.question, deadline)
    retrieved = grounding.titles()
    answer = ask(grounding.system(system_prompt), turns, case.question, deadline)
    reply = grounding.cite(answer)
    bare = _plain(grounding.strip(answer))
    outcome = Outcome(case, retrieved, reply, abstained=grounding.active and not grounding.passages)
    outcome.missing_sources = [
        s for s in case.sources if s.casefold() not in {t.casefold() for t in retrieved}
    ]
    outcome.missing_facts = [f[0] for f in case.facts if not any(_plain(a) in bare for a in f)]
    return outcome


def _plain(text: str) -> str:
    return " ".join(text.casefold().split())


def summary(outcomes: Sequence[Outcome], min_pass: float) -> str:
    """The last line: cases passed, and each check's own tally."""
    passed = sum(o.passed for o in outcomes)
    answering = [o for o in outcomes if not o.case.abstain]
    sourced = [o for o in answering if o.case.sources]
    factual = [o for o in answering if o.case.facts]
    abstaining = [o for o in outcomes if o.case.abstain]
    parts = [
        f"eval: {passed}/{len(outcomes)} passed ({passed / len(outcomes):.0%}, needed {min_pass:.0%})",
        f"sources {sum(not o.missing_sources and not o.abstained for o in sourced)}/{len(sourced)}",
        f"facts {sum(not o.missing_facts and not o.abstained for o in factual)}/{len(factual)}",
        f"abstained {sum(o.abstained for o in abstaining)}/{len(abstaining)}",
    ]
    return " · ".join(parts)
