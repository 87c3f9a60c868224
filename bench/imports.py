"""Cold import time of each function's main.py, next to the libraries it cannot avoid."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from local.emulators import REPO

RUNS = 7
CASES = {
    "import functions_framework": "import functions_framework",
    "functions_framework + pubsub": "import functions_framework; from google.cloud import pubsub_v1",
    "functions_framework + requests": "import functions_framework, requests",
    "the floor responder's: + openai + google.cloud.firestore": (
        "import functions_framework, requests, openai; from google.cloud import firestore"
    ),
    "webhook main.py": "WEBHOOK",
    "transcriber main.py": "TRANSCRIBER",
    "responder main.py": "RESPONDER",
}


def _once(statement: str) -> float:
    if statement.isupper():
        folder = REPO / "functions" / statement.lower()
        statement = f"import sys; sys.path.insert(0, {str(folder)!r}); import main"
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip())


def measure() -> dict[str, float]:
    """Median seconds over fresh interpreters (bytecode caches warm, as on a deployed instance)."""
    return {
        name: round(statistics.median(_once(stmt) for _ in range(RUNS)), 4) for name, stmt in CASES.items()
    }
