"""The floor responder: the least a responder must do with the design's clients. It claims the
message in Firestore (`create()`, the exactly-once the design asks for), asks the model through
the openai SDK and posts the reply to the Graph API. No history, no guardrails: a yardstick for
`make bench`, never deployed.

It imports the same official clients as ours (google-cloud-firestore, openai) and builds them the
way ours does, once per instance at the first event, so a cold start's ratio measures our code
rather than the packages."""

import base64
import json
import os
import threading

import functions_framework
import openai
import requests
from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

_session = requests.Session()
_graph = os.environ["WHATSAPP_API_BASE"] + "/v25.0"
_auth = {"Authorization": "Bearer " + os.environ["WHATSAPP_TOKEN"]}
_clients = None
_lock = threading.Lock()


def clients():
    """Firestore and OpenAI (each reads its own environment), built once."""
    global _clients
    with _lock:
        if _clients is None:
            _clients = firestore.Client(), openai.OpenAI()
        return _clients


@functions_framework.cloud_event
def respond(event):
    message = json.loads(base64.b64decode(event.data["message"]["data"]))
    store, model = clients()
    try:
        store.collection("floor-claims").document(message["id"]).create({"at": firestore.SERVER_TIMESTAMP})
    except AlreadyExists:
        return
    prompt = [{"role": "user", "content": message["text"]["body"]}]
    chat = model.chat.completions.create(model="floor", messages=prompt, timeout=30)
    reply = {
        "messaging_product": "whatsapp",
        "to": message["from"],
        "type": "text",
        "text": {"body": chat.choices[0].message.content},
        "context": {"message_id": message["id"]},
    }
    number = message["phone_number_id"]
    _session.post(f"{_graph}/{number}/messages", json=reply, headers=_auth, timeout=30).raise_for_status()
