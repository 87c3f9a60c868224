"""Pin every dependency (`make lock`): one combined lock for the venv, each function's a subset of it.

Every lock is resolved by `uv pip compile --universal` for Python 3.11 and later, so the same
file installs on the venv's 3.11 and the deployed python312, with the sha256 of every file pip
may download. The developer lock (all functions plus the tools) is resolved first; each
function's lock is then resolved constrained by it, so a version is the same everywhere. A line
`# inputs-sha256: ...` records what a lock was made from; tests/test_locks.py recomputes it and
fails when a requirements*.in changed without `make lock`.

    python scripts/lock.py [--upgrade]   # --upgrade: newest allowed versions, not the current pins
    python scripts/lock.py --prune       # (make setup) uninstall what the dev lock no longer lists
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Changing these changes every lock's digest, so the staleness test asks for `make lock`.
UV_OPTIONS = (
    "--universal",
    "--python-version=3.11",  # the lowest Python a lock must install on (venv, CI); 3.12 deploys
    "--fork-strategy=fewest",  # one version per package for every Python: no 3.11/3.12 split
    "--generate-hashes",
    "--quiet",
)
DIGEST_PREFIX = "# inputs-sha256: "
WHEEL_PYTHONS = ("3.11", "3.12")  # the venv and CI; Cloud Functions' python312
WHEEL_PLATFORM = "x86_64-manylinux_2_28"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
_INCLUDE = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)")


@dataclass(frozen=True, slots=True)
class Lock:
    source: str  # requirements*.in, relative to the repo
    output: str  # its requirements*.txt
    constrained: bool = True  # resolved within the developer lock's versions

    @property
    def sources(self) -> list[Path]:
        """The .in file and every file it includes (-r, -c), recursively, in a stable order."""
        seen: list[Path] = []
        pending = [REPO / self.source]
        while pending:
            path = pending.pop(0)
            if path in seen:
                continue
            seen.append(path)
            for line in path.read_text().splitlines():
                match = _INCLUDE.match(line)
                if match:
                    pending.append((path.parent / match.group(1)).resolve())
        return seen


DEV = Lock("requirements-dev.in", "requirements-dev.txt", constrained=False)
FUNCTIONS = (
    Lock("functions/webhook/requirements.in", "functions/webhook/requirements.txt"),
    Lock("functions/transcriber/requirements.in", "functions/transcriber/requirements.txt"),
    Lock("functions/transcriber/requirements-speech.in", "functions/transcriber/requirements-speech.txt"),
    Lock("functions/responder/requirements.in", "functions/responder/requirements.txt"),
)
LOCKS = (DEV, *FUNCTIONS)


def digest(lock: Lock) -> str:
    """sha256 over the lock's inputs: its .in files, the uv options, and for a function the dev lock."""
    inputs = [*lock.sources, *([REPO / DEV.output] if lock.constrained else [])]
    sha = hashlib.sha256("\n".join(UV_OPTIONS).encode())
    for path in inputs:
        sha.update(b"\0" + path.relative_to(REPO).as_posix().encode() + b"\0")
        sha.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return sha.hexdigest()


def recorded_digest(lock: Lock) -> str | None:
    """The digest written into the lock by the last `make lock`, or None."""
    path = REPO / lock.output
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return None


def compile_lock(uv: str, lock: Lock, upgrade: bool) -> None:
    """Resolve one lock with uv and put the inputs digest under uv's header."""
    command = [uv, "pip", "compile", lock.source, "--output-file", lock.output, *UV_OPTIONS]
    command += ["--custom-compile-command", "make lock"]
    if lock.constrained:
        command += ["--constraint", DEV.output]
    if upgrade:
        command.append("--upgrade")
    env = {**os.environ, "UV_NO_CONFIG": "1"}  # no user or system uv.toml: PyPI and these options only
    subprocess.run(command, cwd=REPO, check=True, env=env)
    path = REPO / lock.output
    lines = path.read_text().splitlines()
    body = [line for line in lines if not line.startswith(DIGEST_PREFIX)]
    header = 0
    while header < len(body) and body[header].startswith("#"):
        header += 1
    body.insert(header, DIGEST_PREFIX + digest(lock))
    path.write_text("\n".join(body) + "\n")
    print(f"locked {lock.output}")


def pinned(path: Path) -> dict[str, str]:
    """{normalized name: version} of every `name==version` line of a lock."""
    pins = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[normalize(match.group("name"))] = match.group("version")
    return pins


def normalize(name: str) -> str:
    """PEP 503: `Flask`, `google_api_core` and `google.api.core` are `flask`, `google-api-core`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def prune() -> int:
    """Uninstall from this interpreter's environment every distribution the dev lock does not list."""
    from importlib import metadata

    keep = set(pinned(REPO / DEV.output)) | {"pip", "setuptools", "wheel"}
    extra = sorted({normalize(d.metadata["Name"]) for d in metadata.distributions()} - keep)
    if extra:
        print(f"removing what the lock no longer lists: {' '.join(extra)}")
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *extra], check=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions, not current pins")
    parser.add_argument("--prune", action="store_true", help="uninstall what the dev lock does not list")
    args = parser.parse_args()
    if args.prune:
        return prune()
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        print("uv is not installed: run `make setup` first", file=sys.stderr)
        return 1
    compile_lock(uv, DEV, args.upgrade)  # first: the functions' locks are constrained by it
    for lock in FUNCTIONS:  # the dev lock's exact pins decide every version here
        compile_lock(uv, lock, args.upgrade)
    return check_wheels(uv)


def check_wheels(uv: str) -> int:
    """Every pin has a Linux wheel for the venv's 3.11 and the deployed 3.12: nothing compiles."""
    for python in WHEEL_PYTHONS:
        command = [uv, "pip", "compile", DEV.source, "--constraint", DEV.output, "--quiet"]
        command += ["--python-version", python, "--python-platform", WHEEL_PLATFORM, "--only-binary", ":all:"]
        command += ["--output-file", os.devnull]
        env = {**os.environ, "UV_NO_CONFIG": "1"}
        if subprocess.run(command, cwd=REPO, env=env, check=False).returncode != 0:
            print(
                f"a pin above has no {WHEEL_PLATFORM} wheel for Python {python}: narrow its range in the .in"
            )
            return 1
    print(f"every pin has a {WHEEL_PLATFORM} wheel for Python {', '.join(WHEEL_PYTHONS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
