"""Media turns within the responder's memory: 20 MB PDFs at once on the deployed thread count.

The real responder (functions-framework under gunicorn, THREADS as deploy.sh sets them, glibc's
MALLOC_MMAP_THRESHOLD_ as deploy.sh sets it) on the emulators; the Graph API serves real 20 MB
PDFs and the model is the loopback fake. The memory is what the kernel counts: the peak resident
set (VmHWM, reset through /proc/<pid>/clear_refs before each measurement) of the worker process,
plus the resident set of gunicorn's arbiter, which shares the instance.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope, MediaRef
from common.meta.filefacts import PDF_STREAM_LIMIT
from common.responder.media_memory import MiB, cost, memory_bytes
from common.responder.texts import DEFAULTS
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import stand_in_env
from tests.support import files
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI

BUSINESS = "106540352242922"
PDF_BYTES = 20 * 1000 * 1000  # MAX_DOCUMENT_BYTES's default
DEPLOYED = {"THREADS": "8", "MALLOC_MMAP_THRESHOLD_": "1048576"}  # what deploy.sh gives the responder
SETTINGS = {**DEPLOYED, "OPENAI_MAX_RETRIES": "0", "VISION_TIMEOUT_SECONDS": "60"}


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return files.big_pdf(PDF_BYTES)


@pytest.fixture
def quiet_model(model: FakeOpenAI, db: firestore.Client) -> FakeOpenAI:
    """A model that thinks a little (so that turns overlap) and answers briefly."""
    model.answer = lambda messages: "It is a three-page scan."
    model.delay = 1.0
    return model


def responder_with(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, memory: str
) -> FunctionProcess:
    return serve("responder", stand_in_env(emulators, graph, model, INSTANCE_MEMORY=memory, **SETTINGS))


def document(graph: FakeGraph, data: bytes, user: str) -> Envelope:
    media_id = str(time.time_ns())
    graph.add_media(media_id, data, "application/pdf")
    envelope = Envelope(f"wamid.{uuid.uuid4().hex}", user, user, BUSINESS, "document", int(time.time()))
    return replace(envelope, media=MediaRef(media_id, "application/pdf", filename="scan.pdf"))


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def worker_of(function: FunctionProcess) -> int:
    """gunicorn's one worker (WORKERS=1), the arbiter's child: where the requests run."""
    arbiter = function.process.pid
    [worker] = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return int(worker)


def warmed(function: FunctionProcess, graph: FakeGraph) -> int:
    """Answer one small PDF (pypdf is imported on first use), then start counting the peak afresh."""
    assert deliver(function, document(graph, files.pdf(2), "15550300000")) == 200
    worker = worker_of(function)
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # VmHWM := VmRSS
    return worker


def test_one_20_mb_pdf_turn_holds_no_more_than_the_share_it_reserves(
    emulators: emu.Emulators, graph: FakeGraph, quiet_model: FakeOpenAI, pdf: bytes
) -> None:
    function = responder_with(emulators, graph, quiet_model, "512Mi")
    try:
        worker = warmed(function, graph)
        before = kib(worker, "VmRSS")
        assert deliver(function, document(graph, pdf, "15550300001")) == 200
        peak = kib(worker, "VmHWM") - before
    finally:
        function.stop()
    print(f"\none {len(pdf)}-byte PDF turn: peak {peak / MiB:.1f} MiB over {before / MiB:.1f} MiB")
    assert len(graph.sent()) == 2 and len(quiet_model.chats()) == 2  # the small PDF's turn, and this one
    assert peak <= cost(len(pdf)), f"{peak / MiB:.1f} MiB, share {cost(len(pdf)) / MiB:.1f} MiB"


@pytest.mark.parametrize(("memory", "count"), [("512Mi", 4), ("512Mi", 8)])
def test_20_mb_pdfs_at_once_are_all_answered_within_the_instance_memory(
    emulators: emu.Emulators, graph: FakeGraph, quiet_model: FakeOpenAI, pdf: bytes, memory: str, count: int
) -> None:
    """`count` users send a 20 MB PDF at the same moment: every one is answered at its first
    delivery, and the instance (worker and arbiter) never holds more than its memory."""
    function = responder_with(emulators, graph, quiet_model, memory)
    try:
        worker = warmed(function, graph)
        arbiter = function.process.pid
        envelopes = [document(graph, pdf, f"155503{index:05d}") for index in range(count)]
        with ThreadPoolExecutor(count) as pool:
            codes = list(pool.map(lambda envelope: deliver(function, envelope, timeout=120), envelopes))
        used = kib(worker, "VmHWM") + kib(arbiter, "VmRSS")
    finally:
        function.stop()
    print(f"\n{count} x {len(pdf)}-byte PDFs at once on {memory}: peak {used / MiB:.1f} MiB")
    assert codes == [200] * count
    assert len(graph.sent()) == count + 1  # and the small PDF's answer
    assert used <= memory_bytes(memory), f"{used / MiB:.1f} MiB on an instance of {memory}"


def test_a_pdf_that_inflates_to_40_mb_is_refused_without_holding_it(
    emulators: emu.Emulators, graph: FakeGraph, quiet_model: FakeOpenAI
) -> None:
    """40 KB on the wire, 40 MB once its cross-reference stream is inflated: the page count stops
    at filefacts.PDF_STREAM_LIMIT, and the file is answered as unreadable at its first delivery."""
    bomb = files.pdf_bomb(40 * 1000 * 1000)
    function = responder_with(emulators, graph, quiet_model, "512Mi")
    try:
        worker = warmed(function, graph)
        before = kib(worker, "VmRSS")
        assert deliver(function, document(graph, bomb, "15550300002")) == 200
        peak = kib(worker, "VmHWM") - before
    finally:
        function.stop()
    print(f"\na {len(bomb)}-byte PDF inflating to 40 MB: peak {peak / MiB:.1f} MiB")
    assert graph.sent()[-1]["text"]["body"] == DEFAULTS["UNSUPPORTED_FILE_TEXT"]
    assert len(quiet_model.chats()) == 1  # the small PDF's turn only
    assert peak < 3 * PDF_STREAM_LIMIT
