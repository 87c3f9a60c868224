"""`make knowledge SOURCE=DIR` and `make eval CASES=FILE`: the knowledge base's two commands.

    python -m local.knowledge sync DIR           the folder becomes the live knowledge base
    python -m local.knowledge sync --remove      no knowledge base any more
    python -m local.knowledge eval FILE [--source DIR] [--min-pass 0.9]

Settings come from the environment, then .env (as deploy.sh reads them). Firestore is the
emulator at FIRESTORE_EMULATOR_HOST when it is set (`make dev`'s is 127.0.0.1:8086), else
GOOGLE_CLOUD_PROJECT's on Google Cloud with Application Default Credentials (`gcloud auth
application-default login` on a laptop; Cloud Shell has them). The embeddings and the chat go
to OPENAI_BASE_URL with OPENAI_API_KEY, as the bot's do.
`eval` with a knowledge folder (`--source`, or the cases file's "knowledge") syncs it into a
throwaway Firestore emulator first and touches nothing of yours; without OPENAI_API_KEY and
OPENAI_BASE_URL the offline stand-in model answers (labelled, in this process).
Exit status: 0 done (eval: passed); 1 some files refused (eval: below --min-pass); 2 did not run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from local import emulators as emu
from local.devconfig import load_dotenv

if TYPE_CHECKING:
    from common.knowledge.evaluate import Case
    from common.knowledge.sync import Sync

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
say: Callable[[str], None] = print  # the command's own lines: stdout, whatever the library logs
DONE, PARTLY, FAILED = 0, 1, 2


class _Warnings(io.TextIOBase):
    """Where the library's JSON log lines go while a command runs: warnings and errors to stderr,
    the rest nowhere (the command prints its own lines)."""

    def write(self, text: str) -> int:
        if '"severity": "WARNING"' in text or '"severity": "ERROR"' in text:
            sys.stderr.write(text)
        return len(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.knowledge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="sync a folder of documents into the knowledge base")
    sync.add_argument("source", nargs="?", type=Path, help="the folder (Markdown, text, HTML, PDF)")
    sync.add_argument("--remove", action="store_true", help="remove the knowledge base instead")
    check = commands.add_parser("eval", help="score retrieval and the model on a business's cases")
    check.add_argument("cases", type=Path, help="the cases file (JSON)")
    check.add_argument("--source", type=Path, help="sync this folder into a throwaway emulator first")
    check.add_argument("--min-pass", type=float, default=1.0, help="share of cases that must pass [1.0]")
    args = parser.parse_args(argv)
    for key, value in load_dotenv(Path(os.environ.get("DOTENV") or REPO / ".env")).items():
        if value.strip() and not os.environ.get(key, "").strip():
            os.environ[key] = value
    global say
    out, sys.stdout = sys.stdout, _Warnings()
    say = functools.partial(print, file=out, flush=True)
    try:
        return run_sync(args) if args.command == "sync" else run_eval(args)
    except Failed as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return FAILED
    finally:
        sys.stdout = out


class Failed(Exception):
    """The command could not run; str() says why."""


def run_sync(args: argparse.Namespace) -> int:
    if not args.remove and args.source is None:
        raise Failed("name the folder: make knowledge SOURCE=DIR")
    doing = "removing the knowledge base from" if args.remove else f"syncing {args.source} into"
    say(f"knowledge: {doing} {_firestore_target()}")
    sync = _sync()
    if args.remove:
        removed = _guarded(sync.remove)
        say(f"knowledge: removed ({removed} version{'s' * (removed != 1)} deleted)")
        return DONE
    summary = _guarded(lambda: sync.run(args.source))
    for path, reason in summary.refused:
        print(f"knowledge: refused {path}: {reason}", file=sys.stderr)
    say(summary.line())
    return PARTLY if summary.refused else DONE


def run_eval(args: argparse.Namespace) -> int:
    from common.knowledge import evaluate

    try:
        cases, folder = evaluate.load(args.cases)
    except evaluate.BadCases as exc:
        raise Failed(str(exc)) from exc
    folder = args.source or folder
    with contextlib.ExitStack() as stack:
        if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
            stack.enter_context(_offline_model())
        if folder is not None:
            stack.enter_context(_throwaway_firestore())
            summary = _guarded(lambda: _sync().run(folder))
            say(summary.line())
        else:
            say(f"eval: the knowledge base of {_firestore_target()}")
        return _score(cases, args.min_pass)


def _score(cases: list[Case], min_pass: float) -> int:
    from common.ai.llm import ChatModel
    from common.knowledge import evaluate
    from common.knowledge.retrieval import Knowledge
    from common.responder.texts import Texts

    knowledge, model, prompt = Knowledge(), ChatModel(), Texts.from_env().system_prompt
    if _guarded(knowledge.active) is None:
        raise Failed("there is no knowledge base: make knowledge SOURCE=DIR first, or give --source")

    def ask(system: str, turns: list[dict[str, str]], question: str, deadline: float) -> str:
        return model.answer(system, turns, question, deadline)

    outcomes = []
    for case in cases:
        outcome = _guarded(lambda case=case: evaluate.run_case(case, knowledge, ask, prompt))
        say(outcome.line())
        outcomes.append(outcome)
    say(evaluate.summary(outcomes, min_pass))
    passed = sum(o.passed for o in outcomes) / len(outcomes)
    return DONE if passed >= min_pass else PARTLY


def _sync() -> Sync:
    """The sync, its clients built here: `--help` loads no Google client."""
    from google.cloud import firestore

    from common import config
    from common.knowledge.embeddings import Embedder
    from common.knowledge.sync import Sync

    if not (config.get("OPENAI_API_KEY") or config.get("OPENAI_BASE_URL")):
        raise Failed("the embeddings need OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)")
    return Sync(firestore.Client(project=config.project()), Embedder(), say=say)


def _firestore_target() -> str:
    from common import config

    project, emulator = config.project(), os.environ.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        return f"the Firestore emulator at {emulator} (project {project})"
    if project == "whatsbot-local":
        raise Failed(
            "no Firestore named: set GOOGLE_CLOUD_PROJECT (Google Cloud) or FIRESTORE_EMULATOR_HOST "
            "(an emulator, e.g. make dev's 127.0.0.1:8086)"
        )
    return f"Firestore of project {project} on Google Cloud"


def _guarded(call: Callable[[], T]) -> T:
    """`call()`, its known failures as one line (Failed) instead of a traceback."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError
    from google.auth.exceptions import DefaultCredentialsError

    from common.ai.llm import ModelRefused, ModelUnavailable
    from common.knowledge.embeddings import EmbeddingsRefused, EmbeddingsUnavailable
    from common.knowledge.retrieval import KnowledgeUnavailable
    from common.knowledge.sync import SyncRefused

    try:
        return call()
    except DefaultCredentialsError as exc:
        raise Failed("no Google credentials: run `gcloud auth application-default login`") from exc
    except (SyncRefused, EmbeddingsRefused, EmbeddingsUnavailable, KnowledgeUnavailable) as exc:
        raise Failed(str(exc)) from exc
    except (ModelRefused, ModelUnavailable) as exc:
        raise Failed(f"the chat model: {exc}") from exc
    except RuntimeError as exc:  # a setting common.config refuses
        raise Failed(str(exc)) from exc
    except (GoogleAPICallError, RetryError) as exc:
        raise Failed(f"Firestore: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc


@contextlib.contextmanager
def _offline_model() -> Iterator[None]:
    """The offline stand-in on a free port of this machine, as the model and the embeddings."""
    from local import offline_model

    server = ThreadingHTTPServer(("127.0.0.1", 0), offline_model.Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    saved = {
        k: os.environ.get(k) for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "EMBEDDING_MODEL")
    }
    os.environ.update(
        OPENAI_BASE_URL=url,
        OPENAI_API_KEY="offline",
        OPENAI_MODEL=offline_model.MODEL,
        EMBEDDING_MODEL=offline_model.MODEL,
    )
    say(f"eval: model {offline_model.LABEL} at {url} (no OPENAI_API_KEY or OPENAI_BASE_URL set)")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        _restore(saved)


@contextlib.contextmanager
def _throwaway_firestore() -> Iterator[None]:
    """A Firestore emulator of its own for this run, stopped (with its data) at the end."""
    try:
        firestore = emu.start_firestore(emu.find_jars())
        firestore.wait_ready()
    except emu.EmulatorError as exc:
        raise Failed(str(exc)) from exc
    saved = {k: os.environ.get(k) for k in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ.update(FIRESTORE_EMULATOR_HOST=firestore.address, GOOGLE_CLOUD_PROJECT="whatsbot-eval")
    say(f"eval: a throwaway Firestore emulator at {firestore.address}")
    try:
        yield
    finally:
        firestore.stop()
        _restore(saved)


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


if __name__ == "__main__":
    sys.exit(main())
