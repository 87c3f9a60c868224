"""The deploy promises of the docs, read from the docs themselves: the sizes and defaults in
docs/deploy.md, and each setting reaching exactly the functions docs/configuration.md says read it.
"""

from __future__ import annotations

import re

import pytest

from tests.support.deploy_cloud import (
    FUNCTIONS,
    PROJECT,
    REPO,
    SECRETS,
    FakeCloud,
    Run,
    env_file_values,
)


@pytest.fixture(scope="module")
def first_deploy(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeCloud, Run]:
    cloud = FakeCloud(tmp_path_factory.mktemp("cloud"))
    run = cloud.run()
    assert run.returncode == 0, run.stderr
    return cloud, run


# -------------------------------------------------------------------------------- the docs' promises
def docs_table(page: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table under a heading of a docs page, header and rule left out."""
    text = "\n" + (REPO / "docs" / page).read_text()
    section = re.split(rf"\n#+ {re.escape(heading)}\n", text, maxsplit=1)[1]
    rows = []
    for line in section.split("\n#", 1)[0].splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    assert rows, f"no table under {heading!r} in docs/{page}"
    return rows[1:]


def deploy_settings() -> list[list[str]]:
    return docs_table("deploy.md", "Deploy settings")


def names_in(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


def test_sizes_and_defaults_are_the_documented_ones(first_deploy: tuple[FakeCloud, Run]) -> None:
    """Checked against the numbers written in docs/deploy.md's "Deploy settings", not deploy.sh's own."""
    cloud, run = first_deploy
    rows = {names_in(row[0])[0] if names_in(row[0]) else row[0]: row for row in deploy_settings()}
    [sizes] = [row for key, row in rows.items() if "_MEMORY" in key]
    keys = re.findall(r"`(?:<FUNCTION>)?_([A-Z_]+)`", sizes[0])
    assert keys == ["MEMORY", "CPU", "TIMEOUT", "CONCURRENCY", "MIN_INSTANCES", "MAX_INSTANCES"]
    documented = dict(re.findall(r"(webhook|transcriber|responder) `([^`]+)`", sizes[1]))
    assert set(documented) == set(FUNCTIONS)
    deploys = run.deploys()
    for name, values in documented.items():
        flags = deploys[f"whatsbot-{name}"].flags
        assert [flags[key.lower().replace("_", "-")] for key in keys] == values.split(), name

    def default(name: str) -> str:
        return re.sub(r"`", "", rows[name][1])

    assert deploys["whatsbot-webhook"].flags["region"] == default("REGION")
    assert {c.words[2] for c in run.find("functions", "deploy")} == {
        f"{default('NAME_PREFIX')}-{name}" for name in FUNCTIONS
    }
    push = cloud.state()["pubsub subscriptions"]["whatsbot-responder-push"]["flags"]
    assert push["max-delivery-attempts"] == default("MAX_DELIVERY_ATTEMPTS")
    assert push["dead-letter-topic"] == default("TOPIC_DEAD_LETTER").replace("$NAME_PREFIX", "whatsbot")


def test_env_example_shows_the_documented_deploy_defaults() -> None:
    """.env.example lists the deploy settings commented out with their defaults: the docs'."""
    rows = {names_in(row[0])[0] if names_in(row[0]) else row[0]: row for row in deploy_settings()}
    [sizes] = [row for key, row in rows.items() if "_MEMORY" in key]
    keys = re.findall(r"`(?:<FUNCTION>)?_([A-Z_]+)`", sizes[0])
    shown = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(\S*)", (REPO / ".env.example").read_text(), re.MULTILINE))
    for name, values in re.findall(r"(webhook|transcriber|responder) `([^`]+)`", sizes[1]):
        for key, value in zip(keys, values.split(), strict=True):
            assert shown.get(f"{name.upper()}_{key}") == value, f"{name.upper()}_{key}"
    for name in ("REGION", "NAME_PREFIX", "MAX_DELIVERY_ATTEMPTS"):
        assert shown.get(name) == rows[name][1].strip("`"), name


CONFIG_SPECIAL = {  # set by deploy.sh itself, or never sent to the cloud
    "GOOGLE_CLOUD_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "ACTIONS_FILE",  # a local path: staged as actions.yaml, which is sent (test_deploy_actions.py)
}
PROBES = {  # values deploy.sh checks; everything else gets a distinctive text
    "TRANSCRIBE_BACKEND": "openai",
    "CLAIM_LEASE_SECONDS": "999",
    "CLAIM_RENEW_SECONDS": "3",
    "CLAIM_LEASE_MARGIN_SECONDS": "2",
    "ATTEMPT_TIMEOUT_SECONDS": "100",
    "WHATSAPP_API_BASE": "https://graph.probe.example",
    "OPENAI_BASE_URL": "https://openai.probe.example/v1",
}


def test_each_setting_reaches_exactly_the_functions_the_docs_say_read_it(cloud: FakeCloud) -> None:
    routes: dict[str, set[str]] = {}
    for row in docs_table("configuration.md", "Configuration"):
        readers = set(re.findall(r"\b(webhook|transcriber|responder|all)\b", row[1]))
        for name in names_in(row[0]):
            routes[name] = set(FUNCTIONS) if "all" in readers else readers
    assert routes, "no configuration table found in docs/configuration.md"
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
            f"{name}: docs/configuration.md says {sorted(readers)}, deploy.sh sends it to {sorted(receivers)}"
        )
    for name in SECRETS:
        receivers = {fn for fn in FUNCTIONS if f"{name}=" in deploys[f"whatsbot-{fn}"].flags["set-secrets"]}
        assert receivers == routes[name], name
    for fn in FUNCTIONS:
        assert env_file_values(deploys[f"whatsbot-{fn}"].env_vars_file)["GOOGLE_CLOUD_PROJECT"] == PROJECT
