"""The WhatsApp simulator: plays Meta (webhooks) and the Graph API, with a chat page, for `make dev`.

Files: `state.py` (users, conversations, media, live events), `meta.py` (signed webhook POSTs),
`graph_api.py` (what the functions call), `audio.py` (voice notes), `server.py` (page, JSON API),
`guard.py` (only the developer's own browser and tools may use it).
"""
