"""make dev's console: every process's output, one line at a time, behind the process's name.

Functions log one JSON object per line (for Cloud Logging); here they are shown as
`SEVERITY message key=value`, which a person reads faster. Emulator logs are followed from
their files, keeping only what says something (warnings, errors, start-up).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

WIDTH = 11  # the longest name, "transcriber"
EMULATOR_KEEP = ("WARNING", "SEVERE", "ERROR", "Exception", "started", "running")


def pretty(line: str) -> str:
    """A structured log line made readable; anything else unchanged."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    severity = str(record.pop("severity", "INFO"))
    message = str(record.pop("message"))
    record.pop("time", None)
    fields = " ".join(f"{k}={v}" for k, v in record.items())
    return f"{severity:<7} {message} {fields}".rstrip()


class _Printer:
    def __init__(self, name: str, out: TextIO, lock: threading.Lock) -> None:
        self.name, self.out, self.lock = name, out, lock
        self.lines: deque[str] = deque(maxlen=20)

    def emit(self, line: str) -> None:
        self.lines.append(line)
        with self.lock, contextlib.suppress(ValueError, OSError):  # the console may be gone
            self.out.write(f"{self.name:>{WIDTH}} | {pretty(line)}\n")
            self.out.flush()

    def tail(self, count: int = 6) -> str:
        return " | ".join(list(self.lines)[-count:])


class Pump(_Printer):
    """A pipe a child writes to; a thread prints its lines (and keeps the last few for errors)."""

    def __init__(self, name: str, out: TextIO, lock: threading.Lock) -> None:
        super().__init__(name, out, lock)
        self._read, self._write = os.pipe()
        self._write_open = True
        self.thread = threading.Thread(target=self._run, name=f"log-{name}", daemon=True)
        self.thread.start()

    def writer(self) -> int:
        """The file descriptor to hand the child as stdout."""
        return self._write

    def writer_spawned(self) -> None:
        """Close our copy of the write end, so the pipe ends when the child (and its children) do."""
        if self._write_open:
            self._write_open = False
            os.close(self._write)

    def _run(self) -> None:
        with os.fdopen(self._read, "rb") as pipe:
            for raw in pipe:
                self.emit(raw.decode(errors="replace").rstrip())

    def close(self) -> None:
        self.writer_spawned()
        self.thread.join(timeout=3)


class Tail(_Printer):
    """Follows a log file that another process writes (the emulators log to files)."""

    def __init__(self, name: str, path: Path, out: TextIO, lock: threading.Lock) -> None:
        super().__init__(name, out, lock)
        self.path, self.stopped = path, threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"log-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError), self.path.open("rb") as file:
            while not self.stopped.is_set():
                raw = file.readline()
                if not raw:
                    time.sleep(0.2)
                    continue
                line = raw.decode(errors="replace").rstrip()
                if any(word in line for word in EMULATOR_KEEP):
                    self.emit(line)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=3)
