"""`make knowledge SOURCE=DIR` on the Firestore emulator, embedding at the loopback OpenAI stand-in:
what a first sync writes, what a re-sync embeds and removes, refusals, and that a sync which dies
or races another never leaves the bot a half-written knowledge base.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.vector import Vector

from common.knowledge import base
from common.knowledge.embeddings import Embedder
from common.knowledge.sync import Summary, Sync, SyncRefused
from local import emulators as emu
from tests.conftest import OPENAI_KEY, PROJECT
from tests.support.fakes import FakeOpenAI
from tests.support.files import docx
from tests.support.knowledge import write

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "harbour-bikes" / "knowledge"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the example business's documents (Markdown, HTML, text, PDF)."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "knowledge"))


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNOWLEDGE_CACHE_SECONDS", "0")  # no responder holds the old pointer here


def syncer(db: firestore.Client, model: FakeOpenAI, **embedder: Any) -> Sync:
    sdk = openai.OpenAI(base_url=model.base_url, api_key=OPENAI_KEY, max_retries=0)
    return Sync(db, Embedder("text-embedding-3-small", sdk=sdk, **embedder), say=lambda line: None)


def generations(db: firestore.Client) -> list[str]:
    return sorted(ref.id for ref in db.collection(base.GENERATIONS).list_documents())


def live_passages(db: firestore.Client) -> list[dict[str, Any]]:
    active = base.read_active(db)
    assert active is not None
    return [s.to_dict() for s in base.passages(db, active.generation).stream()]


def embedded_inputs(model: FakeOpenAI) -> list[str]:
    return [text for body in model.embeddings() for text in body["input"]]


def test_a_folder_is_synced_and_an_unchanged_resync_embeds_nothing(
    db: firestore.Client, model: FakeOpenAI, folder: Path
) -> None:
    first = syncer(db, model).run(folder)
    assert first.line() == (
        "knowledge: documents 4 added, 0 updated, 0 removed, 0 unchanged · passages 13 added, 0 updated,"
        " 0 removed, 0 unchanged · 13 embedded in 1 request"
    )
    [body] = model.embeddings()
    assert body["model"] == "text-embedding-3-small" and body["encoding_format"] == "float"
    passages = live_passages(db)
    assert {p["title"] for p in passages} == {
        "Opening hours",
        "Rental prices",
        "Rental terms",
        "Repairs and service",
    }
    weekend = next(p for p in passages if p["heading"] == "Opening hours > Weekend")
    assert weekend["text"].startswith("Saturday: open from 9:00 to 17:00.")
    assert isinstance(weekend["embedding"], Vector) and len(weekend["embedding"]) == 1536
    assert not any("console.log" in p["text"] or "Contact" in p["text"] for p in passages)  # script, nav
    active = base.read_active(db)
    assert active and (active.documents, active.passages, active.model) == (4, 13, "text-embedding-3-small")

    again = syncer(db, model).run(folder)
    assert again.line().endswith(
        "passages 0 added, 0 updated, 0 removed, 13 unchanged · 0 embedded in 0 requests"
    )
    assert str(again.documents) == "0 added, 0 updated, 0 removed, 4 unchanged"
    assert len(model.embeddings()) == 1  # no request at all
    assert generations(db) == [active.generation]  # nothing rewritten either


def test_an_edit_re_embeds_only_what_changed_and_a_deleted_document_is_gone(
    db: firestore.Client, model: FakeOpenAI, folder: Path
) -> None:
    syncer(db, model).run(folder)
    before = base.read_active(db)
    hours = folder / "opening-hours.md"
    hours.write_text(
        hours.read_text().replace("Saturday: open from 9:00 to 17:00.", "Saturday: open from 8:00 to 18:00.")
    )
    (folder / "prices.html").unlink()
    write(folder, {"parking.md": "# Parking\n\nFree parking behind the shop for customers."})
    model.reset()

    summary = syncer(db, model).run(folder)
    assert str(summary.documents) == "1 added, 1 updated, 1 removed, 2 unchanged"
    assert str(summary.passages) == "1 added, 1 updated, 5 removed, 7 unchanged"
    inputs = embedded_inputs(model)
    assert len(inputs) == 2 and summary.embedded == 2  # the edited passage and the new document
    assert any("8:00 to 18:00" in text for text in inputs) and any("Free parking" in text for text in inputs)
    passages = live_passages(db)
    assert len(passages) == 9
    assert "Rental prices" not in {p["title"] for p in passages}
    assert any("8:00 to 18:00" in p["text"] for p in passages)
    assert not any("9:00 to 17:00" in p["text"] for p in passages)
    after = base.read_active(db)
    assert before and after and generations(db) == [after.generation] != [before.generation]
    old = db.collection(base.GENERATIONS, before.generation, base.PASSAGES).limit(1).get()
    assert old == []  # the replaced version's passages are deleted, not only unlinked


def test_unreadable_files_are_refused_by_name_and_the_rest_synced(
    db: firestore.Client, model: FakeOpenAI, tmp_path: Path
) -> None:
    folder = write(
        tmp_path / "docs",
        {
            "hours.md": "# Hours\n\nOpen every day from 9:00.",
            "menu.docx": docx(),
            "old.txt": "Caf\xe9 prices".encode("latin-1"),
            ".DS_Store": b"\x00\x01",  # hidden: skipped without a word
            "drafts/.notes.md": "# hidden too",
        },
    )
    summary = syncer(db, model).run(folder)
    assert [path for path, _ in summary.refused] == ["menu.docx", "old.txt"]
    assert "not a format the knowledge base reads" in summary.refused[0][1]
    assert summary.line().endswith("· 2 files refused")
    assert [p["title"] for p in live_passages(db)] == ["Hours"]
    empty = write(tmp_path / "empty", {"menu.docx": docx()})
    with pytest.raises(SyncRefused, match="no readable document"):
        syncer(db, model).run(empty)
    assert [p["title"] for p in live_passages(db)] == ["Hours"]  # a refused sync changes nothing


def run_cli(emulators: emu.Emulators, model: FakeOpenAI, *args: str) -> subprocess.Popen[str]:
    """`make knowledge`'s command in a process of its own (so that a test can kill it)."""
    env = {
        **os.environ,
        **emulators.env,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "KNOWLEDGE_EMBED_BATCH": "1",  # one passage per request, 4 requests a wave
        "KNOWLEDGE_CACHE_SECONDS": "0",
        "DOTENV": "/nonexistent",
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", "local.knowledge", "sync", *args]
    return subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_sync_killed_half_way_leaves_the_old_version_live_and_the_next_one_finishes_the_work(
    db: firestore.Client, emulators: emu.Emulators, model: FakeOpenAI, tmp_path: Path
) -> None:
    folder = write(tmp_path / "docs", {"a.md": "# Alpha\n\nAlpha is the first letter."})
    first = run_cli(emulators, model, str(folder))
    assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    old = base.read_active(db)
    assert old is not None
    letters = ["Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf"]
    write(folder, {f"{name.lower()}.md": f"# {name}\n\n{name} is a letter." for name in letters})
    model.reset()
    # Waves of 4 passages (alpha reused, bravo..delta embedded and written), then echo..golf: the
    # first request of the second wave kills the sync, with 4 of 7 documents written.
    killed: list[subprocess.Popen[str]] = []
    model.on(
        lambda r: r.path.endswith("/embeddings") and len(model.embeddings()) == 3, lambda: killed[0].kill()
    )
    killed.append(run_cli(emulators, model, str(folder)))
    assert killed[0].wait(timeout=60) == -9
    assert base.read_active(db) == old  # the bot still reads the old version, whole
    assert [p["title"] for p in live_passages(db)] == ["Alpha"]
    dead = [g for g in generations(db) if g != old.generation]
    assert len(dead) == 1 and len(base.documents(db, dead[0]).get()) == 4

    model.reset()
    third = run_cli(emulators, model, str(folder))
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    assert "documents 6 added, 0 updated, 0 removed, 1 unchanged" in out
    assert sorted(embedded_inputs(model)) == sorted(f"{n}\n{n}\n\n{n} is a letter." for n in letters[3:])
    assert "3 embedded in 3 requests" in out  # bravo..delta's vectors came from the dead sync
    live = base.read_active(db)
    assert live is not None and generations(db) == [live.generation]  # the old and the dead one gone
    assert sorted(p["title"] for p in live_passages(db)) == sorted(["Alpha", *letters])


def test_a_sync_that_loses_a_race_changes_nothing_and_leaves_no_mix(
    db: firestore.Client, model: FakeOpenAI, tmp_path: Path
) -> None:
    mine = write(tmp_path / "mine", {f"m{i}.md": f"# Mine {i}\n\nMine number {i}." for i in range(3)})
    theirs = write(tmp_path / "theirs", {"t.md": "# Theirs\n\nTheirs alone."})
    outcome: list[Summary] = []
    # While this sync embeds, another one (started later) finishes first.
    model.on(lambda r: r.path.endswith("/embeddings"), lambda: outcome.append(syncer(db, model).run(theirs)))
    with pytest.raises(SyncRefused, match="another sync changed the knowledge base"):
        syncer(db, model).run(mine)
    assert outcome and [p["title"] for p in live_passages(db)] == ["Theirs"]
    syncer(db, model).run(theirs)  # the next sync clears what the loser left behind
    assert generations(db) == [base.read_active(db).generation]  # type: ignore[union-attr]
