"""Every command deploy.sh runs, replayed through the real gcloud's parser (issue: the fake gcloud
cannot catch a misspelled flag).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.deploy_cloud import (
    FakeCloud,
    Run,
    legacy_deployment,
    printed_commands,
    set_subscription,
)

# ------------------------------------------------------------------------------ the real gcloud's grammar
GCLOUD_INSTALL = (
    "the real gcloud is needed to check deploy.sh's commands against its parser: install the Google "
    "Cloud CLI (https://cloud.google.com/sdk/docs/install, e.g. apt-get install google-cloud-cli)"
)
NO_ACCOUNT = "You do not currently have an active account selected"


def every_command_the_script_runs(cloud: FakeCloud) -> list[list[str]]:
    """A first deploy, a migration, a converging rerun with the recreate advice, the boost turned
    off, a destroy."""
    legacy_deployment(cloud)
    runs = [Run(0, "", "", cloud.calls())]  # the first deploy, in an empty project
    runs.append(cloud.run())  # the migration
    set_subscription(cloud, "whatsbot-responder-push", enable_message_ordering=None)
    advice = cloud.run(RESPONDER_TIMEOUT="60s", OPENAI_API_KEY="sk-rotated-5e1d", MAX_DELIVERY_ATTEMPTS="7")
    runs.append(advice)
    runs.append(cloud.run("--only", "webhook", CPU_BOOST="off", MIN_INSTANCES="1"))
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
        ("run", "services", "describe"),  # startup CPU boost: a Cloud Run setting of the function
        ("run", "services", "update"),
        ("iam", "service-accounts", "remove-iam-policy-binding"),
        ("functions", "delete"),
        ("firestore", "indexes", "composite", "create"),  # the knowledge base's vector index
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
