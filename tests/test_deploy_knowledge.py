"""deploy.sh and the knowledge base: the vector index retrieval needs on Google Cloud (described
first, created once), and the knowledge settings reaching the responder only. The real gcloud's
parser checks the create command in tests/test_deploy_gcloud.py.
"""

from __future__ import annotations

import json

from tests.support.deploy_cloud import FakeCloud, env_file_values

INDEX = ["firestore", "indexes", "composite", "create"]


def test_a_first_deploy_creates_the_vector_index_and_a_rerun_finds_it(cloud: FakeCloud) -> None:
    first = cloud.run()
    assert first.returncode == 0, first.stderr
    [create] = first.find(*INDEX)
    assert create.flags["collection-group"] == "knowledgePassages"  # common/knowledge/base.py
    assert create.flags["query-scope"] == "COLLECTION"
    field, config = create.flags["field-config"].split(",vector-config=")
    assert field == "field-path=embedding"
    assert json.loads(config) == {"dimension": "1536", "flat": "{}"}  # text-embedding-3-small
    assert "--async" in create.argv  # minutes to build: the deploy goes on
    assert first.find("firestore", "indexes", "composite", "list")  # described before it is made
    second = cloud.run()
    assert second.returncode == 0, second.stderr
    assert second.find("firestore", "indexes", "composite", "list")
    assert not second.find(*INDEX)
    assert "vector index on knowledgePassages.embedding (1536 dimensions): already there" in second.stdout


def test_another_embedding_size_gets_its_own_index_and_a_bad_one_stops_the_deploy(cloud: FakeCloud) -> None:
    assert cloud.run().returncode == 0
    smaller = cloud.run(EMBEDDING_DIMENSIONS="512")
    assert smaller.returncode == 0, smaller.stderr
    [create] = smaller.find(*INDEX)
    assert json.loads(create.flags["field-config"].split("vector-config=")[1])["dimension"] == "512"
    refused = cloud.run(EMBEDDING_DIMENSIONS="4096")
    assert refused.returncode != 0
    assert "EMBEDDING_DIMENSIONS must be 1..2048" in refused.stderr
    assert not refused.find(*INDEX)


def test_only_the_responder_gets_the_knowledge_settings(cloud: FakeCloud) -> None:
    settings = {
        "KNOWLEDGE_TOP_K": "6",
        "KNOWLEDGE_MIN_SIMILARITY": "0.35",
        "KNOWLEDGE_CITE": "off",
        "KNOWLEDGE_CITE_LABEL": "Fuentes",
        "KNOWLEDGE_CACHE_SECONDS": "20",
        "KNOWLEDGE_CONTEXT_WEIGHT": "0.5",
    }
    run = cloud.run(**settings, KNOWLEDGE_DIR="/home/me/docs")
    assert run.returncode == 0, run.stderr
    deploys = run.deploys()
    responder = env_file_values(deploys["whatsbot-responder"].env_vars_file)
    assert {k: responder.get(k) for k in settings} == settings
    assert "KNOWLEDGE_DIR" not in responder  # make dev's, never the cloud's
    for name in ("whatsbot-webhook", "whatsbot-transcriber"):
        assert not [k for k in env_file_values(deploys[name].env_vars_file) if k.startswith("KNOWLEDGE_")]
