"""What deploy.sh uploads: each function's staged folder alone (imports, requirements, served by
functions-framework), and the transcriber's requirements per speech backend.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import functools
import importlib.machinery
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.emulators import free_port
from tests.support.deploy_cloud import (
    DEPLOY,
    FUNCTIONS,
    REPO,
)

COMMON = REPO / "common"


# ------------------------------------------------------------------------------ staged sources
@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every function staged by deploy.sh's own staging, as gcloud would upload it."""
    out = tmp_path_factory.mktemp("staged")
    env = {"PATH": os.environ["PATH"], "HOME": str(out), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [str(DEPLOY), "--stage-only", str(out)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_holds_the_function_and_the_packages_it_imports(staged: Path, name: str) -> None:
    folder = staged / name
    assert (folder / "main.py").read_bytes() == (REPO / "functions" / name / "main.py").read_bytes()
    assert (folder / "requirements.txt").is_file()
    reached = {
        p.relative_to(REPO).parts[1] for p in walk(REPO / "functions" / name)[0] if p.is_relative_to(COMMON)
    }
    staged_packages = {p.name for p in (folder / "common").iterdir() if p.is_dir()}
    assert staged_packages == {part for part in reached if (COMMON / part).is_dir()}
    for package in staged_packages:  # whole packages, as they are in the repo
        wanted = {p.relative_to(REPO).as_posix() for p in (COMMON / package).rglob("*.py")}
        assert wanted <= {p.relative_to(folder).as_posix() for p in folder.rglob("*.py")}
    assert {p.name for p in (folder / "common").glob("*.py")} == {p.name for p in COMMON.glob("*.py")}
    assert not list(folder.rglob("__pycache__"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(requirements: Path) -> set[str]:
    """The distributions requirements.txt brings in: itself and, recursively, their dependencies."""
    todo = []
    for line in requirements.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#")[0])
        if match:
            todo.append(match.group(1))
    closure: set[str] = set()
    while todo:
        name = canonical(todo.pop())
        if name in closure:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. a requirement whose marker excludes this Python
        closure.add(name)
        for requirement in requires:
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0))  # type: ignore[union-attr]
    return closure


def walk(folder: Path) -> tuple[set[Path], set[str]]:
    """From folder/main.py: the files of ours it reaches (lazily or not), and the outside modules.

    A file of the repo's `common/` counts as the folder's own when the folder is a function's
    source in the repo (before staging), so the walk also says which packages staging needs.
    """

    def local_file(module: str) -> Path | None:
        for root in (folder, REPO):
            base = root.joinpath(*module.split("."))
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file() and (root == folder or module.split(".")[0] == "common"):
                    return candidate
            if root == folder and (folder / "common").is_dir():
                return None  # a staged folder: its own copy of common/ only
        return None

    external: set[str] = set()
    todo, seen = [folder / "main.py"], set()
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        root = folder if path.is_relative_to(folder) else REPO
        package = path.relative_to(root).parent.parts
        for parent in range(1, len(package) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append(root.joinpath(*package[:parent], "__init__.py"))
        for node in ast.walk(ast.parse(path.read_text())):
            candidates: list[str] = []
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: `from . import x` inside common/ is common.x
                    anchor = list(package[: len(package) - node.level + 1])
                    base = ".".join([*anchor, node.module] if node.module else anchor)
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for module in candidates:
                found = local_file(module)
                if found is not None:
                    todo.append(found)
                elif not local_file(module.split(".")[0]) and module.split(".")[0] != "__future__":
                    external.add(module)
    return seen, {m for m in external if m.split(".")[0] not in sys.stdlib_module_names}


def reachable_imports(folder: Path) -> set[str]:
    """External modules imported by main.py and by the staged modules it reaches, lazily or not."""
    return walk(folder)[1]


def module_origin(module: str) -> str | None:
    """The file a module would load from, found without importing (running) anything."""
    search: list[str] | None = None
    spec = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        if depth > 1 and search is None:
            return None  # the parent is a plain module: this part is an attribute
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or []) or None
    return spec.origin if spec is not None and spec.origin not in (None, "namespace") else None


@functools.cache
def distribution_files() -> dict[str, str]:
    files = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            files[str(Path(dist.locate_file(file)).resolve())] = canonical(dist.metadata["Name"])
    return files


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_imports_only_what_its_requirements_bring(staged: Path, name: str) -> None:
    """The venv holds every function's packages; each function must declare its own.

    Statically every transcriber backend is reachable, so the transcriber is held to the speech
    lock here; tests/test_locks.py holds its default openai lock to what that backend runs.
    """
    folder = staged / name
    allowed = requirement_closure(folder / "requirements.txt")
    if name == "transcriber":
        allowed |= requirement_closure(REPO / "functions" / "transcriber" / "requirements-speech.txt")
    owners = distribution_files()
    missing = {}
    for module in sorted(reachable_imports(folder)):
        origin = module_origin(module)
        if origin is None:
            continue  # an attribute (`from flask import Request`), or a namespace package (google)
        owner = owners.get(str(Path(origin).resolve()))
        if owner not in allowed:
            missing[module] = owner
    assert missing == {}, f"{name} imports modules its requirements.txt does not bring: {missing}"


@contextlib.contextmanager
def serve_staged(folder: Path, target: str, signature: str) -> Iterator[str]:
    """functions-framework on the staged folder alone: cwd there, no PYTHONPATH, no repo."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder.parent),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "GOOGLE_CLOUD_PROJECT": "whatsbot-staged",
        "WHATSAPP_VERIFY_TOKEN": "staged-verify-token",
        "WHATSAPP_APP_SECRET": "staged-app-secret",
        # Google clients made by mistake would aim here (nothing listens) instead of at real APIs.
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    }
    log = folder.parent / f"{folder.name}-{port}.log"
    argv = [
        sys.executable,
        "-m",
        "functions_framework",
        f"--target={target}",
        "--source=main.py",
        f"--signature-type={signature}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"{folder.name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answered: it is up
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{folder.name} did not listen within 60s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post_json(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_imports_from_itself_only(staged: Path, name: str) -> None:
    folder = staged / name
    probe = (
        "import importlib.util, common, main\n"
        "print(common.__file__)\n"
        "print(importlib.util.find_spec('local') is None and importlib.util.find_spec('tests') is None)\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(staged), "GOOGLE_CLOUD_PROJECT": "whatsbot-staged"}
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    common_file, repo_hidden = proc.stdout.split()
    assert Path(common_file).resolve().is_relative_to(folder.resolve())
    assert repo_hidden == "True"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_serves_alone(staged: Path, name: str) -> None:
    target, signature, _, _ = FUNCTIONS[name]
    with serve_staged(staged / name, target, signature) as url:
        if signature == "http":
            query = "?hub.mode=subscribe&hub.verify_token=staged-verify-token&hub.challenge=4242"
            assert get(url + query) == (200, "4242")
            assert get(url + query.replace("staged-verify-token", "wrong"))[0] == 403
        else:
            # A message that is no envelope: logged and acked (2xx), as retrying cannot fix it.
            bad = {
                "message": {"data": base64.b64encode(b"not an envelope").decode(), "messageId": "1"},
                "subscription": "projects/whatsbot-staged/subscriptions/staged",
            }
            assert 200 <= post_json(url, bad) < 300


# ------------------------------------------------------------------------------ speech backends
@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """deploy.sh with the functions and common/, plus stand-in lock files, in a folder of its own."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy2(DEPLOY, copy / "deploy.sh")
    for folder in ("functions", "common"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    transcriber = copy / "functions" / "transcriber"
    (transcriber / "requirements-speech.txt").write_text(
        "# speech lock stand-in\nSpeechRecognition==3.10.4\n"
    )
    (transcriber / "requirements.in").write_text("openai\n")
    (transcriber / "requirements-speech.in").write_text("SpeechRecognition\n")
    return copy


def stage_transcriber(repo: Path, out: Path, backend: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(out), "LANG": "C.UTF-8"}
    if backend is not None:
        env["TRANSCRIBE_BACKEND"] = backend
    return subprocess.run(
        [str(repo / "deploy.sh"), "--stage-only", str(out), "--only", "transcriber"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["google", "sphinx"])
def test_speech_backends_upload_the_speech_lock_as_requirements(
    repo_copy: Path, tmp_path: Path, backend: str
) -> None:
    proc = stage_transcriber(repo_copy, tmp_path / "out", backend)
    assert proc.returncode == 0, proc.stderr
    staged = tmp_path / "out" / "transcriber"
    speech = repo_copy / "functions" / "transcriber" / "requirements-speech.txt"
    assert (staged / "requirements.txt").read_text() == speech.read_text()
    assert sorted(p.name for p in staged.glob("requirements*")) == ["requirements.txt"]


@pytest.mark.parametrize("backend", [None, "openai"])
def test_the_openai_backend_uploads_its_own_lock_only(
    repo_copy: Path, tmp_path: Path, backend: str | None
) -> None:
    proc = stage_transcriber(repo_copy, tmp_path / "out", backend)
    assert proc.returncode == 0, proc.stderr
    staged = tmp_path / "out" / "transcriber"
    own = repo_copy / "functions" / "transcriber" / "requirements.txt"
    assert (staged / "requirements.txt").read_text() == own.read_text()
    assert sorted(p.name for p in staged.glob("requirements*")) == ["requirements.txt"]


def test_a_speech_backend_without_its_lock_stops_clearly(repo_copy: Path, tmp_path: Path) -> None:
    (repo_copy / "functions" / "transcriber" / "requirements-speech.txt").unlink()
    proc = stage_transcriber(repo_copy, tmp_path / "out", "google")
    assert proc.returncode != 0
    assert "requirements-speech.txt" in proc.stderr
    assert "TRANSCRIBE_BACKEND=google" in proc.stderr
    unknown = stage_transcriber(repo_copy, tmp_path / "out", "whisper-local")
    assert unknown.returncode != 0
    assert "TRANSCRIBE_BACKEND must be openai, google or sphinx" in unknown.stderr
