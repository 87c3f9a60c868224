"""The floor responder: the least a responder must do (decode, ask the model, post the reply to
the Graph API). No claim, no history: a yardstick for `make bench`, never deployed."""

import base64
import json
import os

import functions_framework
import requests

_session = requests.Session()
_model = os.environ["OPENAI_BASE_URL"] + "/chat/completions"
_graph = os.environ["WHATSAPP_API_BASE"] + "/v25.0"
_auth = {"Authorization": "Bearer " + os.environ["WHATSAPP_TOKEN"]}


@functions_framework.cloud_event
def respond(event):
    message = json.loads(base64.b64decode(event.data["message"]["data"]))
    prompt = [{"role": "user", "content": message["text"]["body"]}]
    chat = _session.post(_model, json={"model": "floor", "messages": prompt}, timeout=30).json()
    reply = {
        "messaging_product": "whatsapp",
        "to": message["from"],
        "type": "text",
        "text": {"body": chat["choices"][0]["message"]["content"]},
        "context": {"message_id": message["id"]},
    }
    number = message["phone_number_id"]
    _session.post(f"{_graph}/{number}/messages", json=reply, headers=_auth, timeout=30).raise_for_status()
