"""Command-line client of the WhatsApp simulator: write to the bot as a user, print its reply.

    python -m local.cli send --user 15551234567 --text "hi"
    python -m local.cli send --user 15551234567 --audio tests/audio/en_weather.ogg

Exit status: 0 replied, 1 no reply within --timeout, 2 the simulator refused or is not running.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import requests

EXIT_REPLIED, EXIT_TIMEOUT, EXIT_FAILED = 0, 1, 2


def default_url() -> str:
    return os.environ.get("SIMULATOR_URL") or f"http://127.0.0.1:{os.environ.get('SIMULATOR_PORT') or 8090}"


def session_headers(url: str) -> dict[str, str]:
    """The simulator's per-run token, as the header its state-changing calls want."""
    session = requests.get(f"{url.rstrip('/')}/api/session", timeout=10).json()
    return {session["header"]: session["token"]}


def send(
    url: str,
    user: str,
    text: str | None = None,
    audio: Path | None = None,
    name: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Send as `user` and wait for the bot: the simulator's answer ({message, replies, timed_out})."""
    endpoint = f"{url.rstrip('/')}/api/messages"
    fields = {"user": user, "name": name or ""}
    params = {"wait": str(timeout)}
    headers, wait = session_headers(url), timeout + 30
    if audio is not None:
        with audio.open("rb") as file:
            files = {"audio": (audio.name, file)}
            answer = requests.post(
                endpoint, params=params, headers=headers, data=fields, files=files, timeout=wait
            )
    else:
        body = {**fields, "text": text}
        answer = requests.post(endpoint, params=params, headers=headers, json=body, timeout=wait)
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200:
        reason = body.get("error") or (body.get("message") or {}).get("error") or f"HTTP {answer.status_code}"
        raise SimulatorError(str(reason))
    return body


class SimulatorError(Exception):
    """The simulator refused the message, or the webhook behind it did."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("send", help="send a text or an audio file and print the reply")
    cmd.add_argument("--user", required=True, help="phone number (country code first) or user id US.…")
    cmd.add_argument("--name", help="profile name (new users get 'User NNNN')")
    what = cmd.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="the message to type")
    what.add_argument("--audio", type=Path, help="an audio file; OGG/Opus is sent as a voice note")
    cmd.add_argument("--timeout", type=float, default=60, help="seconds to wait for the reply [60]")
    cmd.add_argument("--url", default=default_url(), help="the simulator [$SIMULATOR_URL or :8090]")
    args = parser.parse_args(argv)

    if args.audio is not None and not args.audio.is_file():
        print(f"no such file: {args.audio}", file=sys.stderr)
        return EXIT_FAILED
    try:
        answer = send(args.url, args.user, args.text, args.audio, args.name, args.timeout)
    except requests.ConnectionError:
        print(f"the simulator is not reachable at {args.url}: is `make dev` running?", file=sys.stderr)
        return EXIT_FAILED
    except (requests.RequestException, SimulatorError) as exc:
        print(f"not sent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if answer.get("timed_out") or not answer.get("replies"):
        print(f"no reply within {args.timeout:g}s", file=sys.stderr)
        return EXIT_TIMEOUT
    for reply in answer["replies"]:
        print(reply.get("text") if reply.get("type") == "text" else f"[{reply.get('type')} message]")
    return EXIT_REPLIED


if __name__ == "__main__":
    sys.exit(main())
