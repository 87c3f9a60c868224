"""Where a function's time goes under load: py-spy samples it while bench's load runs.

`python -m bench.profile webhook|floor|direct [senders]` serves the function as `make bench` does,
drives it with signed POSTs and prints the share of samples per frame (inclusive and own),
from py-spy's collapsed stacks (idle threads left out). Saved under bench/results/.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import ack
from bench.load import run as load
from bench.run import PROJECT, SECRET, create_topics, env_for
from local import emulators as emu
from local.functions import serve
from tests.support.fakes import FakeGraph, FakeOpenAI

HERE = Path(__file__).resolve().parent
SOURCES = {
    "webhook": None,
    "floor": HERE / "floor" / "webhook.py",
    "direct": HERE / "floor" / "webhook_direct.py",
}
IDLE = ("wait (threading.py", "select (selectors.py", "_worker (concurrent", "accept (socket.py")


def summarise(collapsed: Path, top: int = 30) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{total} busy samples", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "own:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "webhook"
    senders = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    out = HERE / "results" / f"profile-{name}-{time.strftime('%H%M%S')}.txt"
    out.parent.mkdir(exist_ok=True)
    graph, model = FakeGraph(), FakeOpenAI()
    try:
        with emu.running() as emulators:
            os.environ.update({**emulators.env, "GOOGLE_CLOUD_PROJECT": PROJECT})
            env = env_for(emulators, graph, model)
            create_topics(emulators, "bench-text", "bench-audio")
            function = serve("webhook", env, source=SOURCES[name])
            try:
                load(function.url, ack.requests_for(function.url, 100, SECRET), 5)
                spy = [Path(sys.executable).parent / "py-spy", "record", "--pid", str(function.process.pid)]
                spy += ["--subprocesses", "--format", "raw", "--rate", "200", "--nonblocking", "--gil"]
                spy += ["--output", str(out.with_suffix(".collapsed")), "--duration", "10"]
                recorder = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)  # py-spy attaches
                stop = threading.Event()
                while recorder.poll() is None and not stop.is_set():
                    result = load(function.url, ack.requests_for(function.url, 1000, SECRET), senders)
                    print(result)
                recorder.wait()
            finally:
                function.stop()
    finally:
        graph.close()
        model.close()
    text = summarise(out.with_suffix(".collapsed"))
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
