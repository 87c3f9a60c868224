"""make dev's settings: ports, local stand-ins for secrets, `.env`, and what to start.

Decided from the settings given (the environment over `.env`), never from this process's own
environment, so tests can start a stack on free ports whatever the machine has set.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.store.lease import DEFAULT_SECONDS, BadLease, Lease
from local import emulators as emu
from local.topics import DeadLetters

# Every port make dev binds: variable -> default. 0 means "any free port".
PORTS = {
    "WEBHOOK_PORT": 8080,
    "TRANSCRIBER_PORT": 8081,
    "RESPONDER_PORT": 8082,
    "PUBSUB_PORT": 8085,
    "FIRESTORE_PORT": 8086,
    "SIMULATOR_PORT": 8090,
    "OFFLINE_MODEL_PORT": 8091,
    "EXAMPLE_BUSINESS_PORT": 8092,
}
# Local stand-ins for secrets: the simulator and the functions agree on them.
LOCAL_DEFAULTS = {
    "GOOGLE_CLOUD_PROJECT": "whatsbot-local",
    "WHATSAPP_APP_SECRET": "local-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "local-verify-token",
    "WHATSAPP_TOKEN": "local-whatsapp-token",
    "WHATSAPP_API_VERSION": "v25.0",
    "TRANSCRIBE_BACKEND": "sphinx",
    "TOPIC_AUDIO": "whatsapp-audio",
    "TOPIC_TEXT": "whatsapp-text",
    "TOPIC_STATUS": "whatsapp-status",
}
REAL_WHATSAPP = ("WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN")  # no local stand-ins then
OFFLINE_MODEL = "offline-stand-in"
SIMULATOR_ADMIN = "15550000000"  # ADMIN_USERS with the simulator, unless .env names others
EXAMPLE_ACTIONS = Path(__file__).resolve().parent.parent / "examples" / "actions.yaml"
EXAMPLE_BUSINESS_TOKEN = "local-business-token"  # noqa: S105 - local/example_business.py's stand-in
EXAMPLE_KNOWLEDGE = Path(__file__).resolve().parent.parent / "examples" / "harbour-bikes" / "knowledge"
FUNCTIONS = ("transcriber", "responder", "webhook")  # started in this order, each on <NAME>_PORT
# The contract with the responder and deploy.sh (common/store/lease.py): unset, renewals and the
# margin are a quarter of the lease.
LEASE_SETTINGS = ("CLAIM_LEASE_SECONDS", "CLAIM_RENEW_SECONDS", "CLAIM_LEASE_MARGIN_SECONDS")


class DevError(RuntimeError):
    """A missing prerequisite or a part that would not start: one line says what to do."""


def load_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments, blanks, `export` and quotes allowed); no interpolation."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def environment(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> dict[str, str]:
    """.env under the process environment; empty counts as unset, as in common.config."""
    merged = {k: v for k, v in dotenv.items() if v.strip()}
    merged.update({k: v for k, v in environ.items() if v.strip()})
    return merged


def check_lease(settings: Mapping[str, str]) -> None:
    """Refuse a claim lease a living attempt could lose (a redelivery would answer twice)."""
    values: dict[str, float | None] = {}
    for name in LEASE_SETTINGS:
        raw = settings.get(name)
        try:
            values[name] = None if raw is None else float(raw)
        except ValueError:
            raise DevError(f"{name} must be a number of seconds, not {raw!r}") from None
    seconds, renew, margin = (values[name] for name in LEASE_SETTINGS)
    try:
        Lease.of(DEFAULT_SECONDS if seconds is None else seconds, renew, margin)
    except BadLease as exc:
        raise DevError(f"{exc}: raise CLAIM_LEASE_SECONDS or renew more often") from None


@dataclass
class Plan:
    """What to start, decided from the settings alone (never from this process's environment)."""

    settings: dict[str, str]
    ports: dict[str, int]
    simulator: bool
    offline_model: bool
    example_business: bool = False  # no ACTIONS_FILE: examples/actions.yaml, local/example_business.py
    # Per run: the simulator's state-changing endpoints want it (its page and the CLI get it from it).
    simulator_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @classmethod
    def from_settings(cls, env: Mapping[str, str]) -> Plan:
        given = {k: v for k, v in env.items() if v.strip()}
        simulator = not given.get("WHATSAPP_API_BASE")
        missing = [k for k in REAL_WHATSAPP if not given.get(k)]
        if not simulator and missing:
            raise DevError(
                f"WHATSAPP_API_BASE is set, so make dev talks to real WhatsApp: set {', '.join(missing)} "
                "too (or unset WHATSAPP_API_BASE to use the simulator)"
            )
        settings = {**LOCAL_DEFAULTS, **given}
        if simulator:  # guardrails: one simulator user may /pause, /resume and /stats
            settings.setdefault("ADMIN_USERS", SIMULATOR_ADMIN)
        check_lease(settings)
        example = not settings.get("ACTIONS_FILE")
        if example:  # the example actions, against the example business make dev starts
            settings["ACTIONS_FILE"] = str(EXAMPLE_ACTIONS)
            settings.setdefault("EXAMPLE_BUSINESS_TOKEN", EXAMPLE_BUSINESS_TOKEN)
        offline = not (settings.get("OPENAI_API_KEY") or settings.get("OPENAI_BASE_URL"))
        if offline and settings["TRANSCRIBE_BACKEND"] == "openai":  # the stand-in cannot transcribe
            settings["TRANSCRIBE_BACKEND"] = "sphinx"
        wanted = [p for p in PORTS if (p != "SIMULATOR_PORT" or simulator)]
        wanted = [p for p in wanted if (p != "OFFLINE_MODEL_PORT" or offline)]
        wanted = [p for p in wanted if (p != "EXAMPLE_BUSINESS_PORT" or example)]
        ports: dict[str, int] = {}
        for name in wanted:
            raw = settings.get(name, str(PORTS[name]))
            if not raw.isdigit() or int(raw) > 65535:
                raise DevError(f"{name} must be a port number (0 for any free port), not {raw!r}")
            ports[name] = int(raw) or emu.free_port()
            if raw != "0" and not emu.port_is_free(ports[name]):
                raise DevError(f"port {raw} ({name}) is already in use: stop what holds it or set {name}")
        plan = cls(settings, ports, simulator, offline, example)
        plan.wiring()  # refuses bad values before anything starts
        return plan

    @property
    def knowledge_dir(self) -> Path | None:
        """The folder synced into the emulator at start: KNOWLEDGE_DIR, else the example business;
        None for KNOWLEDGE_DIR=off."""
        given = self.settings.get("KNOWLEDGE_DIR", "").strip()
        if given.lower() in ("off", "none", "no", "false", "0"):
            return None
        return Path(given) if given else EXAMPLE_KNOWLEDGE

    def url(self, port_name: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}{path}"

    def wiring(self) -> dict[str, Any]:
        """wire_push's arguments: deploy.sh's subscription shape, pointed at the local functions."""
        settings = self.settings
        attempts = settings.get("MAX_DELIVERY_ATTEMPTS", "5")
        if not attempts.isdigit() or not 5 <= int(attempts) <= 100:
            raise DevError(f"MAX_DELIVERY_ATTEMPTS must be 5..100 (Pub/Sub's limits), not {attempts!r}")
        dead_letter_topic = (
            settings.get("TOPIC_DEAD_LETTER") or f"{settings.get('NAME_PREFIX') or 'whatsbot'}-dead-letter"
        )
        return {
            "routes": {
                settings["TOPIC_AUDIO"]: self.url("TRANSCRIBER_PORT"),
                settings["TOPIC_TEXT"]: self.url("RESPONDER_PORT"),
            },
            "ack_deadline": round(float(settings.get("ATTEMPT_TIMEOUT_SECONDS", "120"))),
            "dead_letters": DeadLetters(dead_letter_topic, self.url("RESPONDER_PORT"), int(attempts)),
            "unordered": {
                settings["TOPIC_STATUS"]: self.url("RESPONDER_PORT")
            },  # Meta's statuses of our parts
        }

    def function_env(self, emulators: emu.Emulators) -> dict[str, str]:
        """The functions get .env and the environment, pointed at the local parts."""
        env = {**self.settings, **emulators.env}
        if self.simulator:
            env["WHATSAPP_API_BASE"] = self.url("SIMULATOR_PORT", "/graph")
        if self.offline_model:
            env["OPENAI_BASE_URL"] = self.url("OFFLINE_MODEL_PORT", "/v1")
            env["OPENAI_API_KEY"] = "offline"
            env["OPENAI_MODEL"] = OFFLINE_MODEL
            env["EMBEDDING_MODEL"] = OFFLINE_MODEL  # the stand-in embeds too (local/offline_embeddings.py)
        if self.example_business:
            env["EXAMPLE_BUSINESS_URL"] = self.url("EXAMPLE_BUSINESS_PORT", "")
        return env
