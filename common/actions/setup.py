"""The business's actions and the handoff, built once per instance for the responder's steps.

ACTIONS_FILE is read and checked when the function starts (functions/responder/main.py calls
`spec.configured()`, which this reuses); the handoff is offered when ADMIN_USERS names someone.
Nothing here reads or writes Firestore until a step uses it (common/actions/ says what each costs).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.cloud import firestore

from common.actions import spec
from common.actions.caller import Caller
from common.actions.confirm import Confirmations
from common.actions.handoff import Handoffs
from common.actions.ledger import Ledger
from common.actions.loop import Loop
from common.meta.graph import GraphClient
from common.store.counters import Pauses
from common.store.history import History


@dataclass(frozen=True, slots=True)
class Actions:
    catalog: spec.Catalog
    caller: Caller
    loop: Loop
    confirmations: Confirmations
    handoffs: Handoffs

    @classmethod
    def build(
        cls,
        db: firestore.Client,
        history: History,
        pauses: Pauses,
        graph: GraphClient,
        admins: frozenset[str],
    ) -> Actions:
        catalog, caller = spec.configured(), Caller()
        loop = Loop(catalog, Ledger(db), caller)
        return cls(catalog, caller, loop, Confirmations(db), Handoffs(db, pauses, history, graph, admins))
