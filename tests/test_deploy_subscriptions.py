"""deploy.sh's own push subscriptions: convergence on rerun, settings that cannot change, the move
from Eventarc triggers, two bots in one project, extra settings, attempt deadline and lease.
"""

from __future__ import annotations

import subprocess

import pytest

from common.store.lease import BadLease, Lease
from tests.support.deploy_cloud import (
    APOLOGY,
    FUNCTIONS,
    PROJECT,
    PUSHED,
    REGION,
    RESPONDER_URL,
    Call,
    FakeCloud,
    Run,
    env_file_values,
    invoker,
    legacy_deployment,
    position,
    printed_commands,
    set_subscription,
)


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
    assert webhook["TOPIC_AUDIO"] == "bot2-audio"
    transcriber = env_file_values(second.deploys()["bot2-transcriber"].env_vars_file)
    assert transcriber["TOPIC_TEXT"] == "bot2-text"
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
def test_the_responder_gets_its_attempt_deadline_and_a_short_lease_that_does_not_grow_with_it(
    cloud: FakeCloud,
) -> None:
    run = cloud.run("--only", "responder")
    assert run.returncode == 0, run.stderr
    values = env_file_values(run.deploys()["whatsbot-responder"].env_vars_file)
    assert (values["ATTEMPT_TIMEOUT_SECONDS"], values["CLAIM_LEASE_SECONDS"]) == ("120", "20")
    assert not {"CLAIM_RENEW_SECONDS", "CLAIM_LEASE_MARGIN_SECONDS"} & set(values)  # a quarter of it
    longer = cloud.run("--only", "responder", RESPONDER_TIMEOUT="5m", CLAIM_RENEW_SECONDS="3")
    assert longer.returncode == 0, longer.stderr
    values = env_file_values(longer.deploys()["whatsbot-responder"].env_vars_file)
    assert (values["ATTEMPT_TIMEOUT_SECONDS"], values["CLAIM_LEASE_SECONDS"]) == ("300", "20")
    assert values["CLAIM_RENEW_SECONDS"] == "3"


LEASES = [
    ({}, True),
    ({"CLAIM_LEASE_SECONDS": "8"}, True),  # renewed every 2 s, stops 2 s before its end
    ({"CLAIM_LEASE_SECONDS": "10", "CLAIM_RENEW_SECONDS": "4", "CLAIM_LEASE_MARGIN_SECONDS": "2"}, True),
    ({"CLAIM_LEASE_SECONDS": "9", "CLAIM_RENEW_SECONDS": "4"}, False),  # 9 < 2 x 4 + 2.25
    ({"CLAIM_LEASE_SECONDS": "20", "CLAIM_LEASE_MARGIN_SECONDS": "11"}, False),  # 20 < 2 x 5 + 11
    ({"CLAIM_RENEW_SECONDS": "0"}, False),  # never renewed
]


@pytest.mark.parametrize(("settings", "allowed"), LEASES)
def test_deploy_and_the_responder_refuse_the_same_leases(
    cloud: FakeCloud, settings: dict[str, str], allowed: bool
) -> None:
    """The rule lease >= 2 x renew + margin (common/store/lease.py), checked before any change."""
    number = {k: float(v) for k, v in settings.items()}
    try:
        Lease.of(
            number.get("CLAIM_LEASE_SECONDS", 20),
            number.get("CLAIM_RENEW_SECONDS"),
            number.get("CLAIM_LEASE_MARGIN_SECONDS"),
        )
        responder_allows = True
    except BadLease:
        responder_allows = False
    assert responder_allows == allowed
    run = cloud.run("--dry-run", "--only", "responder", **settings)
    assert (run.returncode == 0) == allowed, run.stderr
    if not allowed:
        assert "CLAIM_LEASE_SECONDS=" in run.stderr and "2 x CLAIM_RENEW_SECONDS" in run.stderr
        assert run.calls == []
        assert "+ gcloud" not in run.stdout


def test_a_lease_in_fractions_of_seconds_is_refused(cloud: FakeCloud) -> None:
    run = cloud.run(CLAIM_LEASE_SECONDS="2.5")
    assert run.returncode != 0
    assert "CLAIM_LEASE_SECONDS must be whole seconds" in run.stderr
    assert run.calls == []


def test_an_attempt_deadline_beyond_the_timeout_is_refused(cloud: FakeCloud) -> None:
    run = cloud.run(ATTEMPT_TIMEOUT_SECONDS="121")
    assert run.returncode != 0
    assert "ATTEMPT_TIMEOUT_SECONDS=121" in run.stderr
    assert run.calls == []
