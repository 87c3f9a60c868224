"""ACTIONS_FILE: the business's HTTP endpoints, read and checked once when the responder starts.

The file is YAML (`safe_load`: no tags, no code). Every problem is an ActionsFileError naming the
action and what is wrong, so a bad file stops the responder at start, not at the first message.
The model chooses only an action's name and its arguments: the URL (`${NAME}` in it is taken
from the environment), the method and the headers come from the file. Arguments are checked
against the action's JSON Schema (jsonschema, draft 2020-12; the schema itself is checked at
start) before any request is made.

Cost: PyYAML and jsonschema are imported only when ACTIONS_FILE is set: the responder's cold
import grows by ~40 ms with the file's checks (docs/benchmarks.md); validating one call's
arguments is a few microseconds.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import config
from common.guard.policy import id_set

HANDOFF = "handoff"  # the built-in action that hands the chat to a person (ADMIN_USERS)
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name
METHODS = ("POST", "GET")
KEYS = frozenset(
    {"name", "description", "url", "method", "parameters", "token_env", "confirm", "confirm_text"}
)
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}
HANDOFF_TOOL = {
    "type": "function",
    "function": {
        "name": HANDOFF,
        "description": (
            "Hand this chat to a person at the business: when the user asks for a person, or when "
            "you cannot help. The user is told that a person will answer; you stop answering."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "what the user needs, in one sentence"}
            },
            "required": ["reason"],
        },
    },
}


class ActionsFileError(RuntimeError):
    """ACTIONS_FILE cannot be used: which action, and what is wrong with it."""


class InvalidCall(ValueError):
    """The model's call cannot be made (unknown action, arguments not JSON or not the schema's)."""


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    description: str
    url: str
    method: str = "POST"
    parameters: dict[str, Any] = field(default_factory=lambda: dict(NO_ARGUMENTS))
    token_env: str | None = None
    token: str = field(default="", repr=False)  # the value of token_env, read at start
    confirm: bool = False
    confirm_text: str | None = None  # "Book {people} people on {date}?": the buttons' question

    def tool(self) -> dict[str, Any]:
        """The model's view of the action: its name, description and argument schema, nothing else."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}

    def question(self, arguments: dict[str, Any]) -> str:
        """What the confirmation buttons ask: the file's confirm_text filled in, else the
        description and the arguments."""
        if self.confirm_text:
            values = {key: _shown(value) for key, value in arguments.items()}
            return string.Formatter().vformat(self.confirm_text, (), _Missing(values))
        shown = ", ".join(f"{key}: {_shown(value)}" for key, value in arguments.items())
        return f"{self.description}" + (f"\n{shown}" if shown else "") + "\nShall I go ahead?"


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "—"


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The actions of one file, and whether the built-in handoff is offered (ADMIN_USERS set)."""

    actions: dict[str, Action]
    handoff: bool = False

    def tools(self) -> list[dict[str, Any]]:
        """`tools=` for chat.completions: every action, then the handoff when it is offered."""
        tools = [action.tool() for action in self.actions.values()]
        return [*tools, HANDOFF_TOOL] if self.handoff else tools

    def __bool__(self) -> bool:
        return bool(self.actions) or self.handoff

    def check(self, name: str, raw: str | None) -> dict[str, Any]:
        """The call's arguments as an object, valid for the action's schema; else InvalidCall
        with a reason the model can act on (it may quote the model's own values: never logged)."""
        if name == HANDOFF and self.handoff:
            schema: dict[str, Any] = HANDOFF_TOOL["function"]["parameters"]  # type: ignore[index]
        elif name in self.actions:
            schema = self.actions[name].parameters
        else:
            known = ", ".join(self.actions) or "none"
            raise InvalidCall(f"there is no action named {name!r} (the actions are: {known})")
        try:
            arguments = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidCall(f"the arguments are not valid JSON ({exc.msg} at {exc.pos})") from exc
        if not isinstance(arguments, dict):
            raise InvalidCall("the arguments must be a JSON object")
        errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(arguments), key=_where)
        if errors:
            raise InvalidCall("; ".join(f"{_where(e) or 'arguments'}: {e.message}" for e in errors[:3]))
        return arguments


def _where(error: Any) -> str:
    return ".".join(str(part) for part in error.absolute_path)


_VALIDATORS: dict[str, Any] = {}


def _validator(schema_text: str) -> Any:
    """One compiled validator per schema (jsonschema imported on first use)."""
    if schema_text not in _VALIDATORS:
        import jsonschema  # only when ACTIONS_FILE is set (the start's checks imported it already)

        _VALIDATORS[schema_text] = jsonschema.Draft202012Validator(json.loads(schema_text))
    return _VALIDATORS[schema_text]


def load(path: str | Path | None, handoff: bool = False, env: dict[str, str] | None = None) -> Catalog:
    """The catalog of ACTIONS_FILE (`path`); no file: only the handoff, when it is offered."""
    if not path:
        return Catalog({}, handoff)
    import yaml

    where = f"ACTIONS_FILE {path}"
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ActionsFileError(f"{where}: cannot be read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ActionsFileError(f"{where}: not valid YAML{line}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("actions"), list):
        raise ActionsFileError(f"{where}: the file must hold `actions:`, a list of actions")
    environ = os.environ if env is None else env
    actions: dict[str, Action] = {}
    for index, raw in enumerate(document["actions"], start=1):
        action = _action(raw, f"{where}: action #{index}", environ)
        if action.name in actions or action.name == HANDOFF:
            taken = "built in (the handoff)" if action.name == HANDOFF else "used twice"
            raise ActionsFileError(f"{where}: action '{action.name}': the name is {taken}")
        actions[action.name] = action
    return Catalog(actions, handoff)


@functools.cache
def configured() -> Catalog:
    """The instance's catalog: ACTIONS_FILE, and the handoff when ADMIN_USERS names someone to
    hand over to. Read once (the responder checks it when it starts)."""
    return load(config.get("ACTIONS_FILE"), handoff=bool(id_set(config.get("ADMIN_USERS"))))


def _action(raw: Any, where: str, environ: Any) -> Action:
    if not isinstance(raw, dict):
        raise ActionsFileError(f"{where}: must be a mapping of name, description, url, ...")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ActionsFileError(f"{where}: name must be 1-64 letters, digits, '_' or '-'")
    where = where.split(": action #")[0] + f": action '{name}'"
    if unknown := sorted(set(raw) - KEYS):
        raise ActionsFileError(
            f"{where}: unknown key {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})"
        )
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ActionsFileError(f"{where}: description is required (the model reads it to choose)")
    method = str(raw.get("method") or "POST").upper()
    if method not in METHODS:
        raise ActionsFileError(f"{where}: method must be POST or GET, not {raw.get('method')!r}")
    url = raw.get("url")
    if not isinstance(url, str):
        raise ActionsFileError(f"{where}: url is required")
    url = _expand(url, environ, where)
    if problem := url_problem(url):
        raise ActionsFileError(f"{where}: url {problem}")
    parameters = raw.get("parameters", NO_ARGUMENTS)
    _check_schema(parameters, where)
    token_env, token = raw.get("token_env"), ""
    if token_env is not None:
        if not isinstance(token_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
            raise ActionsFileError(f"{where}: token_env must be the name of an environment variable")
        token = str(environ.get(token_env) or "").strip()
        if not token:
            raise ActionsFileError(f"{where}: token_env {token_env} is not set in the environment")
    confirm = raw.get("confirm", False)
    if not isinstance(confirm, bool):
        raise ActionsFileError(f"{where}: confirm must be true or false")
    confirm_text = raw.get("confirm_text")
    if confirm_text is not None and not (isinstance(confirm_text, str) and confirm_text.strip()):
        raise ActionsFileError(f"{where}: confirm_text must be a text")
    if confirm_text:
        _check_template(confirm_text, parameters, where)
    return Action(name, description.strip(), url, method, parameters, token_env, token, confirm, confirm_text)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(url: str, environ: Any, where: str) -> str:
    """`${NAME}` in a url is the environment's NAME (one file for staging and production)."""

    def value(match: re.Match[str]) -> str:
        found = str(environ.get(match[1]) or "").strip()
        if not found:
            raise ActionsFileError(f"{where}: url names ${{{match[1]}}}, which is not set in the environment")
        return found

    return _VARIABLE.sub(value, url)


def url_problem(url: str) -> str | None:
    """Why `url` may not be called, or None: https anywhere; plain http only on this machine."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"is not a valid URL: {url!r}"
    if not parts.hostname:
        return f"has no host: {url!r}"
    if parts.username or parts.password:
        return "must not hold a user or password (use token_env)"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and loopback(parts.hostname):
        return None
    return f"must be https (plain http only on this machine: 127.0.0.1, ::1, localhost), not {url!r}"


def loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_schema(parameters: Any, where: str) -> None:
    import jsonschema

    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise ActionsFileError(f"{where}: parameters must be a JSON Schema of `type: object`")
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except jsonschema.SchemaError as exc:
        path = ".".join(str(p) for p in exc.absolute_path) or "parameters"
        raise ActionsFileError(
            f"{where}: parameters is not a valid JSON Schema ({path}: {exc.message})"
        ) from None


def _check_template(text: str, parameters: dict[str, Any], where: str) -> None:
    known = set((parameters.get("properties") or {}).keys())
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError as exc:
        raise ActionsFileError(f"{where}: confirm_text is not a valid template ({exc})") from None
    if unknown := sorted(fields - known):
        raise ActionsFileError(f"{where}: confirm_text names {', '.join(unknown)}, not among the parameters")
