"""Shared fixtures: the real emulators (started once per session), wiped before each test; the
deploy tests' fake Google Cloud."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.support.deploy_cloud import FakeCloud
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.pubsub import Topics

PROJECT = "whatsbot-test"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
TOPIC_AUDIO, TOPIC_TEXT = "test-audio", "test-text"
OPENAI_KEY = "sk-test-openai-key"


@pytest.fixture(scope="session")
def emulators() -> Iterator[emu.Emulators]:
    """Both emulators for the whole session; a missing install fails loudly, never skips."""
    try:
        both = emu.start_both()
    except emu.EmulatorError as exc:
        pytest.fail(str(exc), pytrace=False)
    saved = {k: os.environ.get(k) for k in [*both.env, "GOOGLE_CLOUD_PROJECT"]}
    os.environ.update({**both.env, "GOOGLE_CLOUD_PROJECT": PROJECT})
    try:
        yield both
    finally:
        both.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def topics(emulators: emu.Emulators) -> Iterator[Topics]:
    """A wiped emulator with the audio and text topics, each with a pull subscription."""
    emulators.wipe(PROJECT)
    topics = Topics(PROJECT)
    topics.create(TOPIC_AUDIO, TOPIC_TEXT)
    yield topics
    topics.close()


def function_env(emulators: emu.Emulators, **extra: str) -> dict[str, str]:
    """The environment our functions get in tests: emulators, test secrets, test topics."""
    return {
        **emulators.env,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "TOPIC_AUDIO": TOPIC_AUDIO,
        "TOPIC_TEXT": TOPIC_TEXT,
        "MAX_MESSAGE_AGE_HOURS": "0",  # the corpus fixtures are dated May 2026: never stale here
        **extra,
    }


def stand_in_env(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, **extra: str
) -> dict[str, str]:
    """function_env plus the loopback Graph API and OpenAI the functions talk to."""
    return function_env(
        emulators,
        WHATSAPP_TOKEN=graph.token,
        WHATSAPP_API_BASE=graph.url,
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY=OPENAI_KEY,
        **extra,
    )


@pytest.fixture(scope="module")
def webhook(emulators: emu.Emulators) -> Iterator[FunctionProcess]:
    """The webhook as tests configure it, for the module's tests."""
    function = serve("webhook", function_env(emulators))
    yield function
    function.stop()


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraph]:
    """A loopback Graph API for the module's functions (tests call `.reset()` as they need)."""
    server = FakeGraph()
    yield server
    server.close()


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    """A loopback OpenAI-compatible server for the module's functions."""
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def db(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[firestore.Client]:
    """A wiped Firestore and stand-ins as new, for every test of a module's running functions."""
    emu.wipe_firestore(emulators.firestore, PROJECT)
    graph.reset()
    model.reset()
    client = firestore.Client(project=PROJECT)
    yield client
    client.close()


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    """A project of our own for deploy.sh: gcloud on PATH records every call (tests/support/fake_gcloud)."""
    return FakeCloud(tmp_path)
