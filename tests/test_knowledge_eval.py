"""`make eval CASES=FILE`: the example business passes its own cases with the offline stand-in
(retrieval and model as in a turn, in a throwaway Firestore emulator), and a case expecting a
document the folder lacks makes it exit non-zero, unless --min-pass allows that share of failures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "harbour-bikes"


def evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FIRESTORE_", "KNOWLEDGE_"))}
    env.update(DOTENV="/nonexistent", PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "local.knowledge", "eval", *args]
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)


def test_the_example_business_passes_its_own_cases_with_the_offline_stand_in() -> None:
    done = evaluate(str(EXAMPLE / "cases.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    cases = json.loads((EXAMPLE / "cases.json").read_text())["cases"]
    assert [line.split()[0] for line in lines if line.startswith(("PASS", "FAIL"))] == ["PASS"] * len(cases)
    assert "PASS  follow-up on the day after: sources ok; facts 1/1" in lines
    assert "PASS  not something we sell: abstained" in lines
    assert lines[-1].startswith(f"eval: {len(cases)}/{len(cases)} passed (100%, needed 100%)")
    assert "[offline stand-in model]" in done.stdout  # labelled: nobody takes it for a model
    assert not [line for line in lines if line.startswith("{")]  # the library's log lines stay out


def test_a_case_expecting_a_document_the_folder_lacks_fails_the_run(tmp_path: Path) -> None:
    cases = json.loads((EXAMPLE / "cases.json").read_text())["cases"]
    cases.append({"name": "parking", "question": "Where can I park my car?", "sources": ["Parking"]})
    file = tmp_path / "cases.json"
    file.write_text(json.dumps({"knowledge": str(EXAMPLE / "knowledge"), "cases": cases}))
    failed = evaluate(str(file))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL  parking: no passage found; sources missing Parking" in failed.stdout.splitlines()
    assert failed.stdout.splitlines()[-1].startswith(
        f"eval: {len(cases) - 1}/{len(cases)} passed (92%, needed 100%)"
    )
    assert evaluate(str(file), "--min-pass", "0.9").returncode == 0


def test_a_cases_file_it_cannot_use_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "cases.json"
    file.write_text(json.dumps([{"question": "Hours?", "abstain": True, "sources": ["Opening hours"]}]))
    refused = evaluate(str(file), "--source", str(EXAMPLE / "knowledge"))
    assert refused.returncode == 2
    assert "case 1: a case that should abstain expects no sources or facts" in refused.stderr
