"""deploy.sh's answers to cold starts: warm instances (MIN_INSTANCES, billed while idle) and startup
CPU boost, which gcloud sets on each function's Cloud Run service (`functions deploy` has no flag
for it; tests/test_deploy_gcloud.py replays these commands through the real gcloud's parser).
"""

from __future__ import annotations

import pytest

from tests.support.deploy_cloud import FUNCTIONS, PROJECT, REGION, FakeCloud, position

SERVICES = [f"whatsbot-{name}" for name in FUNCTIONS]


def test_every_function_starts_with_cpu_boost_set_on_its_cloud_run_service(cloud: FakeCloud) -> None:
    run = cloud.run()
    assert run.returncode == 0, run.stderr
    updates = {c.words[3]: c for c in run.find("run", "services", "update")}
    assert sorted(updates) == sorted(SERVICES)
    for service, call in updates.items():
        assert "--cpu-boost" in call.argv
        assert call.flags["region"] == REGION
        assert call.flags["project"] == PROJECT
        # after the deploy that made the service, which is the function's own
        assert position(run, "functions", "deploy", service) < run.calls.index(call)
    assert all(cloud.state()["functions"][service]["cpu_boost"] for service in SERVICES)


def test_a_second_run_finds_the_boost_set_and_changes_nothing(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    again = cloud.run()
    assert again.returncode == 0, again.stderr
    assert again.find("run", "services", "update") == []
    assert len(again.find("run", "services", "describe")) == len(SERVICES)
    assert again.stdout.count("startup CPU boost: on") == len(SERVICES)


def test_cpu_boost_off_turns_it_off(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    run = cloud.run("--only", "responder", CPU_BOOST="off")
    assert run.returncode == 0, run.stderr
    [update] = run.find("run", "services", "update")
    assert update.words[3] == "whatsbot-responder"
    assert "--no-cpu-boost" in update.argv
    assert cloud.state()["functions"]["whatsbot-responder"]["cpu_boost"] is False


def test_dry_run_shows_the_boost_it_would_set(cloud: FakeCloud) -> None:
    run = cloud.run("--dry-run")
    assert run.returncode == 0, run.stderr
    assert run.calls == []
    for service in SERVICES:
        assert f"+ gcloud run services update {service} --region={REGION} --cpu-boost" in run.stdout


def test_min_instances_keeps_every_function_warm_and_a_functions_own_wins(cloud: FakeCloud) -> None:
    run = cloud.run(MIN_INSTANCES="1", RESPONDER_MIN_INSTANCES="2")
    assert run.returncode == 0, run.stderr
    warm = {name: call.flags["min-instances"] for name, call in run.deploys().items()}
    assert warm == {"whatsbot-webhook": "1", "whatsbot-transcriber": "1", "whatsbot-responder": "2"}


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"MIN_INSTANCES": "one"}, "WEBHOOK_MIN_INSTANCES=one and _MAX_INSTANCES=10 must be whole numbers"),
        ({"TRANSCRIBER_MIN_INSTANCES": "6"}, "TRANSCRIBER_MIN_INSTANCES=6 is above its MAX_INSTANCES=5"),
        ({"CPU_BOOST": "yes"}, "CPU_BOOST must be on or off, got 'yes'"),
    ],
)
def test_a_bad_cold_start_setting_is_refused_before_any_call(
    cloud: FakeCloud, settings: dict[str, str], refusal: str
) -> None:
    run = cloud.run(**settings)
    assert run.returncode != 0
    assert refusal in run.stderr
    assert run.calls == []
