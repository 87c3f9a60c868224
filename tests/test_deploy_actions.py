"""deploy.sh ships ACTIONS_FILE with the responder's source and each action's token as a secret."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.deploy_cloud import FakeCloud, env_file_values

TOKEN = "shop-token-77aa19c3"  # distinctive: it must never reach a command line


def test_the_actions_file_ships_with_the_responder_and_its_tokens_as_secrets(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    actions = tmp_path / "my-actions.yaml"
    actions.write_text(
        "actions:\n  - name: order_status\n    description: An order.\n"
        "    url: ${SHOP_URL}/orders\n    token_env: SHOP_API_TOKEN\n"
    )
    run = cloud.run(
        ACTIONS_FILE=str(actions),
        SHOP_API_TOKEN=TOKEN,
        EXTRA_ENV_VARS="SHOP_URL",
        SHOP_URL="https://shop.example",
    )
    assert run.returncode == 0, run.stderr
    deploys = run.deploys()
    responder = deploys["whatsbot-responder"]
    assert "actions.yaml" in responder.source_files
    settings = env_file_values(responder.env_vars_file)
    assert settings["ACTIONS_FILE"] == "actions.yaml" and settings["SHOP_URL"] == "https://shop.example"
    assert "SHOP_API_TOKEN=whatsbot-action-shop-api-token:latest" in responder.flags["set-secrets"]
    assert cloud.state()["secrets"]["whatsbot-action-shop-api-token"]["value"] == TOKEN
    for name in ("whatsbot-webhook", "whatsbot-transcriber"):
        assert "actions.yaml" not in deploys[name].source_files
        assert "SHOP_API_TOKEN" not in deploys[name].flags["set-secrets"]
    seen = json.dumps([c.argv for c in run.calls]) + "".join(c.env_vars_file or "" for c in run.calls)
    assert TOKEN not in seen + run.stdout + run.stderr


def test_a_missing_actions_file_stops_the_deploy(cloud: FakeCloud, tmp_path: Path) -> None:
    run = cloud.run(ACTIONS_FILE=str(tmp_path / "nowhere.yaml"))
    assert run.returncode != 0 and "nowhere.yaml: no such file" in run.stderr
