"""The fake Google Cloud the deploy.sh tests run against (tests/support/fake_gcloud), and readers of its log.

The fake records every call and keeps the resources it was asked to create, so the tests can
check what a first run makes, that a second run only updates, that a dry run touches nothing,
and that no secret value ever reaches a command line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
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
STATUS = "whatsbot-status-push"  # Meta's confirmations of sent parts, pushed to the responder
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


def printed_commands(text: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in text.splitlines() if line.strip().startswith("gcloud ")]


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
