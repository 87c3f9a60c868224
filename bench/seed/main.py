"""The seed's synchronous design, for comparison: the webhook waits for the model and the send.

Signature check and parsing as ours, then (like the Flask monolith) the model call and the
Graph send happen before Meta gets its answer.
"""

from __future__ import annotations

import json
import os

import functions_framework
import requests

from common.meta.signature import Verdict, verify

_session = requests.Session()


@functions_framework.http
def webhook(request):
    body = request.get_data()
    if (
        verify(body, request.headers.get("X-Hub-Signature-256"), os.environ["WHATSAPP_APP_SECRET"])
        is not Verdict.VALID
    ):
        return "forbidden", 403
    message = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]
    answer = _session.post(
        os.environ["OPENAI_BASE_URL"] + "/chat/completions",
        json={"model": "seed", "messages": [{"role": "user", "content": message["text"]["body"]}]},
        timeout=30,
    ).json()["choices"][0]["message"]["content"]
    _session.post(
        f"{os.environ['WHATSAPP_API_BASE']}/v25.0/{message.get('from')}/messages",
        json={
            "messaging_product": "whatsapp",
            "to": message["from"],
            "type": "text",
            "text": {"body": answer},
        },
        headers={"Authorization": f"Bearer {os.environ['WHATSAPP_TOKEN']}"},
        timeout=30,
    )
    return "ok"
