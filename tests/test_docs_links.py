"""README.md is the front door and docs/ the manual: every relative link and anchor in them resolves.

A link names a file that exists (relative to the page), and a `#fragment` names a heading of the
page it points to, slugged as GitHub renders it. Links in code (fenced blocks, `spans`) are text,
not links; http(s) and mailto links are not followed (the suite has no network).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README_MAX_LINES = 260  # the front door: what WhatsBot is, the quickstart, deploy in brief, links

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+\1")
INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose(text: str) -> list[str]:
    """The page's lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        lines.append("" if fenced or FENCE.match(line) else CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lowercased, punctuation dropped, spaces → -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|__|\*|_(?=\W|$)|(?<=\W)_)", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets -1, -2… as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image on a page."""
    found = []
    for number, line in enumerate(prose(page.read_text()), 1):
        found += [(number, target) for target in INLINE.findall(line)]
        if reference := REFERENCE.match(line):
            found.append((number, reference.group(1)))
    return found


def broken(pages: list[Path], root: Path) -> list[str]:
    """What does not resolve, as `page:line: target (why)`."""
    problems = []
    for page in pages:
        for number, target in links(page):
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not target:
                problems.append(f"{where} (empty link)")
                continue
            if EXTERNAL.match(target):
                continue
            path, _, fragment = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists():
                problems.append(f"{where} (no such file)")
            elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
                problems.append(f"{where} (no heading with that anchor)")
            elif fragment and destination.suffix != ".md":
                problems.append(f"{where} (an anchor into a file that is not Markdown)")
    return problems


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_link_and_anchor_resolves() -> None:
    assert broken(pages(), REPO) == []


def test_the_readme_stays_a_front_door() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move the detail into docs/"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(REPO / target.partition("#")[0]).resolve() for _, target in links(REPO / "README.md")}
    unlinked = [page.name for page in pages()[1:] if page.resolve() not in linked]
    assert unlinked == [], "pages of docs/ the README does not link to"


def test_github_slugs() -> None:
    assert slug("`make dev`: the whole bot on this machine") == "make-dev-the-whole-bot-on-this-machine"
    assert slug("Moving from an older deploy.sh (Eventarc triggers)") == (
        "moving-from-an-older-deploysh-eventarc-triggers"
    )
    assert slug("The packages of `common/`") == "the-packages-of-common"
    assert slug("Roll back, redeploy, delete") == "roll-back-redeploy-delete"
    assert slug("**Bold** and [a link](x.md) in a heading") == "bold-and-a-link-in-a-heading"
    assert slug("snake_case stays") == "snake_case-stays"


def test_a_broken_link_or_anchor_fails(tmp_path: Path) -> None:
    """The check itself: a missing file, a missing heading and a repeated heading's suffix."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\n## Twice\n\n## Twice\n\n```sh\n# not a heading\n```\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#twice) [ok](docs/page.md#twice-1) [ok](#title)\n"
        "[gone](docs/missing.md) [no anchor](docs/page.md#thrice) [fenced](docs/page.md#not-a-heading)\n"
        "![no picture](docs/missing.png) [here](#nowhere) [web](https://example.com/#x)\n"
        "`[in code](docs/missing.md)`\n\n"
        "```\n[in a block](docs/missing.md)\n```\n\n"
        "[ref]: docs/also-missing.md\n"
    )
    problems = broken([readme, tmp_path / "docs" / "page.md"], tmp_path)
    assert problems == [
        "README.md:4: docs/missing.md (no such file)",
        "README.md:4: docs/page.md#thrice (no heading with that anchor)",
        "README.md:4: docs/page.md#not-a-heading (no heading with that anchor)",
        "README.md:5: docs/missing.png (no such file)",
        "README.md:5: #nowhere (no heading with that anchor)",
        "README.md:12: docs/also-missing.md (no such file)",
    ]
