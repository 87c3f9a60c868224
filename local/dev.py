"""`make dev`: the whole bot on one machine, started and stopped by the code the e2e tests use.

Emulators (local.emulators), topics with push subscriptions to the functions, the three
functions (local.functions.serve), the WhatsApp simulator unless WHATSAPP_API_BASE is set, the
offline stand-in model unless OPENAI_API_KEY / OPENAI_BASE_URL is set, the example business
(local/example_business.py, for examples/actions.yaml) unless ACTIONS_FILE is set, and the
knowledge base of KNOWLEDGE_DIR (the example business in examples/ when unset; KNOWLEDGE_DIR=off:
none). `start_stack(env)`
returns a Stack whose `.stop()` ends every process it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from local import emulators as emu
from local.devconfig import (
    FUNCTIONS,
    LOCAL_DEFAULTS,
    PORTS,
    DevError,
    Plan,
    environment,
    load_dotenv,
)
from local.devlogs import Pump, Tail
from local.functions import FUNCTIONS as TARGETS
from local.functions import REPO, FunctionError, FunctionProcess, serve
from local.topics import wire_push

__all__ = ["LOCAL_DEFAULTS", "PORTS", "DevError", "Plan", "Stack", "environment", "load_dotenv"]
__all__ += ["main", "start_stack"]


@dataclass
class Stack:
    """Everything make dev started; `stop()` ends it all, in reverse order, and waits."""

    plan: Plan
    emulators: emu.Emulators | None = None
    processes: list[FunctionProcess] = field(default_factory=list)
    logs: list[Pump | Tail] = field(default_factory=list)
    ready_seconds: float = 0.0

    @property
    def simulator_url(self) -> str:
        return self.plan.url("SIMULATOR_PORT") if self.plan.simulator else ""

    @property
    def simulator_token(self) -> str:
        """The simulator's per-run token (header X-Simulator-Token on its state-changing calls)."""
        return self.plan.simulator_token if self.plan.simulator else ""

    @property
    def webhook_url(self) -> str:
        return self.plan.url("WEBHOOK_PORT")

    def ready_line(self) -> str:
        plan = self.plan
        parts = [f"WhatsBot is ready in {self.ready_seconds:.1f}s"]
        if plan.simulator:
            parts.append(f"chat {self.simulator_url}")
        else:
            parts.append(f"Graph API {plan.settings['WHATSAPP_API_BASE']} (simulator off)")
        parts.append(f"webhook {self.webhook_url}")
        if plan.offline_model:
            parts.append(f"model: offline stand-in {plan.url('OFFLINE_MODEL_PORT', '/v1')}")
        else:
            where = plan.settings.get("OPENAI_BASE_URL") or "OpenAI"
            parts.append(f"model: {plan.settings.get('OPENAI_MODEL') or 'default'} at {where}")
        parts.append(f"transcription: {plan.settings['TRANSCRIBE_BACKEND']}")
        if plan.example_business:
            parts.append(f"actions: examples/actions.yaml at {plan.url('EXAMPLE_BUSINESS_PORT')}")
        folder = plan.knowledge_dir
        shown = (
            folder.resolve().relative_to(REPO) if folder and folder.resolve().is_relative_to(REPO) else folder
        )
        parts.append(f"knowledge: {shown or 'off'}")
        parts.append(f"Pub/Sub {plan.ports['PUBSUB_PORT']}, Firestore {plan.ports['FIRESTORE_PORT']}")
        return " | ".join(parts) + " | Ctrl-C stops it all"

    def dead(self) -> str | None:
        """The name of a process that ended on its own, if any."""
        for process in self.processes:
            if process.process.poll() is not None:
                return process.name
        if self.emulators:
            for emulator in (self.emulators.pubsub, self.emulators.firestore):
                if emulator.process.poll() is not None:
                    return f"{emulator.name} emulator"
        return None

    def bound_ports(self) -> list[int]:
        """Ports of ours that something still listens on (none once `stop()` has returned)."""
        return [port for port in self.plan.ports.values() if not emu.port_is_free(port)]

    def stop(self) -> None:
        """SIGTERM to every process group at once (they wind down in parallel), then wait for each."""
        emulators = [self.emulators.pubsub, self.emulators.firestore] if self.emulators else []
        for child in [p.process for p in self.processes] + [e.process for e in emulators]:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()  # waits; SIGKILL after 10 s
        for emulator in emulators:
            emulator.stop()
        for log in self.logs:
            log.close()


def _spawn_module(name: str, module: str, port: int, env: dict[str, str], out: Pump) -> FunctionProcess:
    """Our own servers (simulator, offline model), started like local.functions starts functions."""
    process = subprocess.Popen(
        emu.dying_with_parent([sys.executable, "-m", module]),
        env={**os.environ, **env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
        cwd=REPO,
        stdout=out.writer(),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.writer_spawned()
    return FunctionProcess(name, port, process, None)


def _preflight() -> emu.Jars:
    if not shutil.which("java"):
        raise DevError("java not found: the emulators need Java 17+ (apt-get install default-jre-headless)")
    try:
        return emu.find_jars()
    except emu.EmulatorError as exc:
        raise DevError(str(exc)) from exc


def start_stack(env: Mapping[str, str], out: TextIO | None = None) -> Stack:
    """Start everything (processes from this thread: they die with it); DevError says what failed."""
    started = time.monotonic()
    out = out or sys.stdout
    jars = _preflight()
    plan = Plan.from_settings(env)
    stack = Stack(plan)
    try:
        _start(stack, jars, out)
    except BaseException as exc:
        stack.stop()
        if isinstance(exc, (emu.EmulatorError, FunctionError)):
            raise DevError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
        raise
    stack.ready_seconds = time.monotonic() - started
    return stack


def _start(stack: Stack, jars: emu.Jars, out: TextIO) -> None:
    """Emulators, our servers and the Pub/Sub-driven functions; topics; the webhook last.

    The webhook opens its port only once every topic and subscription exists, so a message
    POSTed the moment the port accepts is queued, never answered 503.
    """
    plan, lock = stack.plan, threading.Lock()
    pubsub = emu.start_pubsub(jars, plan.ports["PUBSUB_PORT"])
    stack.emulators = emu.Emulators(pubsub, pubsub)  # replaced once Firestore has started too
    firestore = emu.start_firestore(jars, plan.ports["FIRESTORE_PORT"])
    stack.emulators = emu.Emulators(pubsub, firestore)
    for emulator in (pubsub, firestore):
        stack.logs.append(Tail(emulator.name, emulator.log_path, out, lock))
    env = plan.function_env(stack.emulators)
    own = []
    if plan.offline_model:
        own.append(("model", "local.offline_model", "OFFLINE_MODEL_PORT"))
    if plan.simulator:
        own.append(("simulator", "local.simulator", "SIMULATOR_PORT"))
    if plan.example_business:
        own.append(("business", "local.example_business", "EXAMPLE_BUSINESS_PORT"))
    for name, module, port_name in own:
        pump = Pump(name, out, lock)
        stack.logs.append(pump)
        port = plan.ports[port_name]
        own_env = {**env, "WEBHOOK_URL": stack.webhook_url, port_name: str(port)}
        if name == "simulator":
            own_env["SIMULATOR_TOKEN"] = plan.simulator_token
        stack.processes.append(_spawn_module(name, module, port, own_env, pump))
    *pushed, webhook = FUNCTIONS
    for name in pushed:
        _serve(stack, name, env, Pump(name, out, lock))
    pubsub.wait_ready()
    wire_push(pubsub.address, plan.settings["GOOGLE_CLOUD_PROJECT"], **plan.wiring())
    firestore.wait_ready()
    for process in stack.processes:
        process.wait_ready()
    _load_knowledge(stack, env, Pump("knowledge", out, lock))
    _serve(stack, webhook, env, Pump(webhook, out, lock))


def _load_knowledge(stack: Stack, env: dict[str, str], pump: Pump) -> None:
    """`make knowledge` on the plan's folder (the example business by default), into the emulator."""
    stack.logs.append(pump)
    folder = stack.plan.knowledge_dir
    if folder is None:
        pump.writer_spawned()
        return
    argv = [sys.executable, "-m", "local.knowledge", "sync", str(folder)]
    child_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            argv, env=child_env, cwd=REPO, stdout=pump.writer(), stderr=subprocess.STDOUT, timeout=300
        )
    finally:
        pump.writer_spawned()
    if done.returncode > 1:  # 1: some files refused, the rest synced
        pump.close()
        raise DevError(
            f"the knowledge base in {folder} could not be synced: {pump.tail(2)} (KNOWLEDGE_DIR=off skips it)"
        )


def _serve(stack: Stack, name: str, env: dict[str, str], pump: Pump) -> None:
    """One function on its port, its output pumped to the console; returns once it listens.

    The Pub/Sub-driven ones through local/push_guard.py: no web page may call them.
    """
    stack.logs.append(pump)
    source = None
    if name != "webhook":
        source = REPO / "local" / "push_guard.py"
        env = {**env, "GUARDED_SOURCE": str(REPO / "functions" / name / "main.py")}
        env["GUARDED_TARGET"] = TARGETS[name][0]
    try:
        port = stack.plan.ports[f"{name.upper()}_PORT"]
        stack.processes.append(serve(name, env, port, stdout=pump.writer(), source=source))
    except FunctionError as exc:
        raise FunctionError(f"{exc} {pump.tail()}") from exc
    finally:
        pump.writer_spawned()


def main() -> int:
    """Start, print one ready line, stream the logs, stop everything on Ctrl-C or SIGTERM."""
    env = environment(os.environ, load_dotenv(Path(os.environ.get("DOTENV") or REPO / ".env")))
    stopping = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        if not ready.is_set():
            raise KeyboardInterrupt  # during start-up: unwind, start_stack stops what it started
        stopping.set()

    ready = threading.Event()
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        stack = start_stack(env)
    except DevError as exc:
        print(f"make dev: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("make dev: interrupted while starting; everything it started is stopped", file=sys.stderr)
        return 130
    ready.set()
    print(stack.ready_line(), flush=True)
    code = 0
    while not stopping.wait(0.5):
        if (name := stack.dead()) is not None:
            print(f"make dev: {name} stopped unexpectedly (log above); stopping the rest", file=sys.stderr)
            code = 1
            break
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signum, signal.SIG_IGN)
    stack.stop()
    if bound := stack.bound_ports():
        print(f"make dev: stopped, but ports {bound} are still bound", file=sys.stderr)
        return 1
    print("make dev: stopped; every process ended and every port is free", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
