"""Serve one of our functions with functions-framework in its own process (tests and `make dev`)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from local.emulators import REPO, dying_with_parent, free_port, port_is_free, stop_group

FUNCTIONS = {
    # name: (entry point, signature type)
    "webhook": ("webhook", "http"),
    "transcriber": ("transcribe", "cloudevent"),
    "responder": ("respond", "cloudevent"),
}


class FunctionError(RuntimeError):
    pass


@dataclass
class FunctionProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log_text(self) -> str:
        if self.log_path is None:
            return ""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FunctionError(
                    f"{self.name} exited with {self.process.returncode}: {self.log_text()[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise FunctionError(f"{self.name} did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        stop_group(self.process)


def serve(
    name: str,
    env: dict[str, str],
    port: int | None = None,
    stdout: int | None = None,
    source: Path | None = None,
) -> FunctionProcess:
    """Start functions-framework for functions/<name>/main.py with `common` importable, as deployed.

    `source` serves another main.py with the same entry point (the benchmarks' baselines).
    """
    target, signature_type = FUNCTIONS[name]
    port = port or free_port()
    if not port_is_free(port):
        raise FunctionError(f"{name}: port {port} is already in use")
    log_path = None
    if stdout is None:
        log_path = Path(tempfile.gettempdir()) / f"whatsbot-{name}-{port}.log"
        stdout = log_path.open("wb")
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable,
        "-m",
        "functions_framework",
        f"--target={target}",
        f"--source={source or REPO / 'functions' / name / 'main.py'}",
        f"--signature-type={signature_type}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    try:
        process = subprocess.Popen(
            dying_with_parent(argv),
            env=full_env,
            cwd=REPO,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log_path is not None and hasattr(stdout, "close"):
            stdout.close()  # type: ignore[union-attr]
    function = FunctionProcess(name, port, process, log_path)
    function.wait_ready()
    return function
