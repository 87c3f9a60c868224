"""Find, start, wipe and stop the official Pub/Sub and Firestore emulators (tests and `make dev`).

The jars are started directly with java (faster than `gcloud beta emulators`). They are looked
for under the gcloud SDK root, then $EMULATORS_DIR, then ../shared/emulators beside the checkout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PUBSUB_JAR_GLOB = "pubsub-emulator/lib/cloud-pubsub-emulator-*.jar"
FIRESTORE_JAR = "cloud-firestore-emulator/cloud-firestore-emulator.jar"
FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
# Quick JIT and a small heap: the emulators start in about half the time and serve tests fine.
JAVA_OPTS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xms64m", "-Xmx512m", "-Duser.language=en")
HOW_TO_INSTALL = (
    "Google Cloud emulators not found. Install them with "
    "`gcloud components install pubsub-emulator cloud-firestore-emulator` "
    "(or apt-get install google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator), "
    "or set EMULATORS_DIR to a folder holding pubsub-emulator/ and cloud-firestore-emulator/."
)


class EmulatorError(RuntimeError):
    """An emulator cannot be found or does not start; the message says what to do."""


@dataclass(frozen=True)
class Jars:
    pubsub: Path
    firestore: Path
    source: str


def find_jars(candidates: Iterable[tuple[str, Path]] | None = None) -> Jars:
    """Look in the gcloud SDK, then $EMULATORS_DIR, then ../shared/emulators; fail with advice."""
    for source, platform in _candidate_dirs() if candidates is None else candidates:
        pubsub = sorted(platform.glob(PUBSUB_JAR_GLOB))
        firestore = platform / FIRESTORE_JAR
        if pubsub and firestore.is_file():
            return Jars(pubsub[-1], firestore, source)
    raise EmulatorError(HOW_TO_INSTALL)


def _candidate_dirs() -> Iterator[tuple[str, Path]]:
    sdk_root = _gcloud_sdk_root()
    if sdk_root:
        yield "gcloud", Path(sdk_root) / "platform"
    if os.environ.get("EMULATORS_DIR"):
        yield "EMULATORS_DIR", Path(os.environ["EMULATORS_DIR"])
    yield "shared", REPO.parent / "shared" / "emulators"


def _gcloud_sdk_root() -> str | None:
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    guess = Path(gcloud).resolve().parent.parent  # <sdk>/bin/gcloud: no need to run gcloud
    if (guess / "platform").is_dir():
        return str(guess)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or None
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """No server listens there. SO_REUSEADDR as servers set it: TIME_WAIT left by a stop is no obstacle."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Terminate the process's whole group and wait, so no child outlives us (SIGKILL after 10 s)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def dying_with_parent(argv: list[str]) -> list[str]:
    """The command, made to get SIGTERM when the process that starts it dies, even by SIGKILL.

    util-linux's setpriv sets PR_SET_PDEATHSIG and execs the command, so Popen needs no
    preexec_fn: a preexec_fn makes Python fork() instead of vfork(), and fork() runs gRPC's
    pthread_atfork handlers, which can hang the starting process for good while its Pub/Sub or
    Firestore client has threads at work (seen in the test suite). Without setpriv (not Linux)
    the command runs as it is: stop() still ends its process group.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "SIGTERM", "--", *argv] if setpriv else argv


@dataclass
class Emulator:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorError(f"{self.name} emulator exited: {self.log_tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"http://{self.address}/", timeout=1) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise EmulatorError(f"{self.name} emulator did not answer within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        stop_group(self.process)


def _spawn(name: str, args: list[str], port: int) -> Emulator:
    java = shutil.which("java")
    if not java:
        raise EmulatorError(
            "java not found: the emulators need Java 17+ (apt-get install default-jre-headless)"
        )
    if not port_is_free(port):
        raise EmulatorError(f"{name} emulator: port {port} is already in use")
    log_path = Path(tempfile.gettempdir()) / f"whatsbot-{name}-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            dying_with_parent([java, *JAVA_OPTS, *args]),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Emulator(name, port, process, log_path)


def start_pubsub(jars: Jars, port: int | None = None) -> Emulator:
    port = port or free_port()
    return _spawn("pubsub", ["-jar", str(jars.pubsub), "--host=127.0.0.1", f"--port={port}"], port)


def start_firestore(jars: Jars, port: int | None = None) -> Emulator:
    port = port or free_port()
    args = ["-cp", str(jars.firestore), FIRESTORE_MAIN, "start", "--host=127.0.0.1", f"--port={port}"]
    return _spawn("firestore", args, port)


def wipe_firestore(emulator: Emulator, project: str) -> None:
    """Delete every document of the project's default database (the emulator's reset endpoint)."""
    url = f"http://{emulator.address}/emulator/v1/projects/{project}/databases/(default)/documents"
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def wipe_pubsub(emulator: Emulator, project: str) -> None:
    """Delete every subscription and topic of the project (the emulator has no reset endpoint)."""
    from google.cloud import pubsub_v1

    with pubsub_host(emulator.address):
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        try:
            project_path = f"projects/{project}"
            for subscription in subscriber.list_subscriptions(request={"project": project_path}):
                subscriber.delete_subscription(request={"subscription": subscription.name})
            for topic in publisher.list_topics(request={"project": project_path}):
                publisher.delete_topic(request={"topic": topic.name})
        finally:
            subscriber.close()
            publisher.transport.close()


@contextlib.contextmanager
def pubsub_host(address: str) -> Iterator[None]:
    """Pub/Sub clients created inside this block talk to the emulator at `address`."""
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = address
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved


@dataclass
class Emulators:
    """Both emulators, started together (in parallel) and stopped together."""

    pubsub: Emulator
    firestore: Emulator

    @property
    def env(self) -> dict[str, str]:
        return {
            "PUBSUB_EMULATOR_HOST": self.pubsub.address,
            "FIRESTORE_EMULATOR_HOST": self.firestore.address,
        }

    def wipe(self, project: str) -> None:
        wipe_pubsub(self.pubsub, project)
        wipe_firestore(self.firestore, project)

    def stop(self) -> None:
        self.pubsub.stop()
        self.firestore.stop()


def start_both(pubsub_port: int | None = None, firestore_port: int | None = None) -> Emulators:
    jars = find_jars()
    pubsub = start_pubsub(jars, pubsub_port)
    try:
        firestore = start_firestore(jars, firestore_port)
    except Exception:
        pubsub.stop()
        raise
    both = Emulators(pubsub, firestore)
    try:
        pubsub.wait_ready()
        firestore.wait_ready()
    except Exception:
        both.stop()
        raise
    return both


@contextlib.contextmanager
def running(pubsub_port: int | None = None, firestore_port: int | None = None) -> Iterator[Emulators]:
    both = start_both(pubsub_port, firestore_port)
    try:
        yield both
    finally:
        both.stop()
