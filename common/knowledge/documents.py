"""A business's files read into titled sections of text: Markdown, plain text, HTML and PDF.

One reader per format turns the file into a flat list of headings and paragraphs; `_sections`
then gives every paragraph the headings above it, which the passages keep as their context.
A file it cannot read is refused (`Unreadable`) with a reason a person can act on; nothing here
touches the network or Firestore.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

FORMATS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html"}
FORMATS[".pdf"] = "pdf"
Item = tuple[int, str]  # (heading level 1..6, its text) or (0, a paragraph)


class Unreadable(Exception):
    """The file cannot become a document; str() says why, for the sync's refusal line."""


@dataclass(frozen=True, slots=True)
class Section:
    headings: tuple[str, ...]  # outermost first; () before the first heading
    paragraphs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Document:
    path: str  # relative to the synced folder, with '/'
    title: str
    sections: tuple[Section, ...]
    digest: str  # sha256 of the file's bytes: a re-sync compares it


def read(file: Path, root: Path, max_bytes: int, max_pages: int) -> Document:
    """The document in `file` (inside the folder `root`), or Unreadable."""
    kind = FORMATS.get(file.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FORMATS))
        raise Unreadable(f"not a format the knowledge base reads ({known}): save it as PDF, Markdown or text")
    size = file.stat().st_size
    if size > max_bytes:
        raise Unreadable(f"{size:,} bytes, over KNOWLEDGE_MAX_FILE_BYTES={max_bytes:,}: split it")
    data = file.read_bytes()
    title, items = _pdf(data, max_pages) if kind == "pdf" else _text_format(kind, data)
    sections = _sections(items)
    if not sections:
        raise Unreadable("no text in it" + (" (a scanned PDF needs OCR first)" if kind == "pdf" else ""))
    name = file.relative_to(root).as_posix()
    named = file.stem.replace("_", " ").replace("-", " ").strip()
    heading = _first_heading(items) if kind != "pdf" else None  # a PDF's headings are its page numbers
    title = _clean(title or heading or named[:1].upper() + named[1:])
    return Document(name, title[:120], sections, hashlib.sha256(data).hexdigest())


def _text_format(kind: str, data: bytes) -> tuple[str | None, list[Item]]:
    text = _decode(data, html=kind == "html")
    if kind == "markdown":
        return None, _markdown(text)
    if kind == "html":
        parser = _Html()
        parser.feed(text)
        parser.close()
        return parser.title, parser.items
    return None, [(0, p) for p in _paragraphs(text)]


def _decode(data: bytes, html: bool) -> str:
    """UTF-8 (with or without BOM); HTML may name another charset in a <meta> tag."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    declared = re.search(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_-]+)", data[:4096], re.I) if html else None
    if declared:
        try:
            return data.decode(declared.group(1).decode())
        except (LookupError, UnicodeDecodeError):
            pass
    raise Unreadable("not UTF-8 text: save it as UTF-8")


def _paragraphs(text: str) -> list[str]:
    return [p for p in (_clean(b) for b in re.split(r"\n\s*\n", text)) if p]


def _clean(text: str) -> str:
    """Runs of spaces and tabs as one space, blank lines dropped, ends trimmed."""
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _markdown(text: str) -> list[Item]:
    """ATX (`## x`) and setext (`x` over `===`/`---`) headings; fenced code is text; front matter dropped."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---" and "---" in (s.strip() for s in lines[1:]):
        lines = lines[[s.strip() for s in lines].index("---", 1) + 1 :]
    items: list[Item] = []
    block: list[str] = []
    fence = None

    def flush() -> None:
        paragraph = _clean("\n".join(block))
        if paragraph and not re.fullmatch(r"[-*_=\s]+", paragraph):  # a thematic break is no text
            items.append((0, paragraph))
        block.clear()

    for index, line in enumerate(lines):
        stripped = line.strip()
        if fence is not None:
            block.append(line)
            fence = None if stripped.startswith(fence) else fence
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            block.append(line)
            continue
        atx = re.match(r"^ {0,3}(#{1,6})\s+(.*?)(\s+#+)?\s*$", line)
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if atx:
            flush()
            items.append((len(atx.group(1)), atx.group(2).strip()))
        elif stripped and len(block) == 0 and re.fullmatch(r"=+|-+", following) and len(following) >= 3:
            items.append((1 if following[0] == "=" else 2, stripped))
        elif re.fullmatch(r"=+|-+", stripped) and items and items[-1][0] and not block:
            continue  # the underline of a setext heading
        elif not stripped:
            flush()
        else:
            block.append(line)
    flush()
    return items


class _Html(HTMLParser):
    """Headings and text blocks of an HTML page; scripts, styles and navigation menus skipped."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "nav", "head"})
    BLOCKS = frozenset({"p", "div", "li", "tr", "br", "section", "article", "table", "ul", "ol", "dd", "dt"})
    BLOCKS |= frozenset({"blockquote", "pre", "address", "header", "footer", "main", "aside", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.items: list[Item] = []
        self._skipping: list[str] = []
        self._text: list[str] = []
        self._heading = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title, self._text = True, []
        elif tag == "body":  # a page that never closes its <head>
            self._skipping = [t for t in self._skipping if t != "head"]
        elif tag in self.SKIP:
            self._skipping.append(tag)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = int(tag[1])
        elif tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self.title, self._in_title, self._text = _clean(" ".join(self._text)) or None, False, []
        elif self._skipping and tag == self._skipping[-1]:
            self._skipping.pop()
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title or not self._skipping:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = _clean(" ".join(self._text).replace("\n", " "))
        self._text = []
        if text:
            self.items.append((self._heading, text))
        self._heading = 0


def _pdf(data: bytes, max_pages: int) -> tuple[str | None, list[Item]]:
    """Each page's text as paragraphs under a heading "page N"; the title from the PDF's metadata."""
    from pypdf import PdfReader  # only a sync reads PDFs: not loaded by the responder
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("the PDF is password-protected: save a copy without the password")
        if len(reader.pages) > max_pages:
            raise Unreadable(f"{len(reader.pages)} pages, over KNOWLEDGE_MAX_PDF_PAGES={max_pages}: split it")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError) as exc:
        raise Unreadable(f"not a PDF pypdf can read ({type(exc).__name__})") from exc
    items: list[Item] = []
    for number, text in enumerate(pages, 1):  # a page is a section of its own: "page 2"
        items += [(1, f"page {number}")] if len(pages) > 1 else []
        items += [(0, paragraph) for paragraph in _paragraphs(text)]
    return (str(title).strip() or None) if title else None, items


def _first_heading(items: list[Item]) -> str | None:
    return next((text for level, text in items if level), None)


def _sections(items: list[Item]) -> tuple[Section, ...]:
    """Paragraphs grouped under the headings above them (a deeper heading nests, a shallower one
    closes what it outranks)."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    paragraphs: list[str] = []

    def close() -> None:
        if paragraphs:
            sections.append(Section(tuple(text for _, text in stack), tuple(paragraphs)))
            paragraphs.clear()

    for level, text in items:
        if level:
            close()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, _clean(text)[:120]))
        else:
            paragraphs.append(text)
    close()
    return tuple(sections)
