"""Code shared by the WhatsBot functions; deploy.sh copies the packages each function imports.

Packages, lowest first; a module imports only from its own package or a lower layer (the
suite's tests/test_layers.py checks it):

0. `config`, `log`, `startup` (modules here): settings, the log sink, the cold-start collector pause.
1. `meta`: Meta's formats and the Graph API.
2. `bus`: the envelope and Pub/Sub.
3. `store` (Firestore) and `ai` (the model, speech, transcription): neither imports the other.
4. `guard` (the guardrails' rules) and `knowledge` (the business's documents: sync, retrieval,
   the prompt's passages and sources): neither imports the other.
5. `actions`: the business's endpoints as the model's tools (called once each), and the handoff.
6. `webhook`, `transcriber`, `responder`: what each function does; none imports another.
"""
