"""A business's files read into titled sections and cut into passages (no network, no Firestore):
titles by format, heading context, what an HTML page leaves out, PDFs, refusals, the size bounds
that keep every passage within the embeddings API's per-input limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.knowledge.documents import Unreadable, read
from common.knowledge.passages import LONGEST_CHARS, MAX_INPUT_BYTES, split, tokens_at_most
from tests.support.files import docx
from tests.support.knowledge import text_pdf, write

LIMITS = {"max_bytes": 1_000_000, "max_pages": 50}


def one(folder: Path, name: str, content: str | bytes) -> tuple[str, list[tuple[str, str]]]:
    """(title, [(heading, text)] of its passages) of one file."""
    write(folder, {name: content})
    document = read(folder / name, folder, **LIMITS)
    return document.title, [(p.heading, p.text) for p in split(document)]


@pytest.mark.parametrize(
    ("name", "content", "title"),
    [
        ("a.md", "Intro line.\n\n# Opening hours\n\nMon-Fri 8:30-18:00.\n", "Opening hours"),
        ("b.md", "Opening hours\n=============\n\nMon-Fri 8:30-18:00.\n", "Opening hours"),
        ("c.md", "---\ntitle: ignored\n---\nNo heading at all.\n", "C"),
        ("d.html", "<title>Prices</title><h1>Other</h1><p>15 EUR</p>", "Prices"),
        ("e.html", "<html><body><h1>Rental prices</h1><p>15 EUR</p></body></html>", "Rental prices"),
        ("opening-hours_2026.txt", "Mon-Fri 8:30-18:00.", "Opening hours 2026"),
    ],
)
def test_the_title_is_the_first_heading_or_the_html_title_or_the_file_name(
    tmp_path: Path, name: str, content: str, title: str
) -> None:
    assert one(tmp_path, name, content)[0] == title


def test_markdown_passages_keep_the_headings_above_them(tmp_path: Path) -> None:
    text = (
        "# Opening hours\nWe are at Quay Street 12.\n\n## Weekend\nSaturday 9:00-17:00.\n\n"
        "### Sunday\nSunday 10:00-16:00.\n\n## Holidays\nClosed on 25 December.\n\n"
        "```\n# not a heading: code\n```\n"
    )
    _, passages = one(tmp_path, "hours.md", text)
    assert passages == [
        ("Opening hours", "We are at Quay Street 12."),
        ("Opening hours > Weekend", "Saturday 9:00-17:00."),
        ("Opening hours > Weekend > Sunday", "Sunday 10:00-16:00."),
        ("Opening hours > Holidays", "Closed on 25 December.\n\n```\n# not a heading: code\n```"),
    ]


def test_an_html_page_gives_its_text_without_scripts_styles_or_menus(tmp_path: Path) -> None:
    page = (
        "<html><head><title>Prices</title><style>p{color:red}</style></head><body>"
        "<nav><a href='/'>Home</a> <a href='/x'>Contact</a></nav><h1>Prices</h1>"
        "<p>A city bike: 15&nbsp;EUR &amp; a helmet.</p><h2>Deposit</h2>"
        "<ul><li>100 EUR</li><li>by card</li></ul>"
        "<script>alert('x')</script></body></html>"
    )
    _, passages = one(tmp_path, "prices.html", page)
    assert passages == [
        ("Prices", "A city bike: 15 EUR & a helmet."),
        ("Prices > Deposit", "100 EUR\n\nby card"),
    ]


def test_a_pdf_gives_each_pages_text_and_its_metadata_title(tmp_path: Path) -> None:
    pdf = text_pdf([["Bring an identity card."], ["Cancel up to 24 hours before."]], title="Rental terms")
    title, passages = one(tmp_path, "terms.pdf", pdf)
    assert title == "Rental terms"
    assert passages == [("page 1", "Bring an identity card."), ("page 2", "Cancel up to 24 hours before.")]
    assert one(tmp_path, "untitled-terms.pdf", text_pdf([["Some text."]]))[0] == "Untitled terms"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.docx", docx(), "not a format the knowledge base reads"),
        ("latin1.txt", "Öffnungszeiten".encode("latin-1"), "not UTF-8 text"),
        ("empty.md", "# Only a heading\n", "no text in it"),
        ("scan.pdf", text_pdf([[]]), "no text in it (a scanned PDF needs OCR first)"),
        ("broken.pdf", b"%PDF-1.4\nthis is not a PDF", "not a PDF pypdf can read"),
        ("big.txt", "x" * 1_000_001, "over KNOWLEDGE_MAX_FILE_BYTES=1,000,000"),
    ],
)
def test_a_file_it_cannot_read_is_refused_with_a_reason(
    tmp_path: Path, name: str, content: str | bytes, reason: str
) -> None:
    with pytest.raises(Unreadable) as refused:
        one(tmp_path, name, content)
    assert reason in str(refused.value)


def test_long_text_is_cut_at_sentences_then_words_and_every_passage_fits_one_embeddings_input(
    tmp_path: Path,
) -> None:
    sentences = " ".join(f"Sentence {i} says something about bikes and ferries." for i in range(200))
    wide = "€" * 5000  # 3 bytes a character, and no space to cut at
    _, passages = one(tmp_path, "long.md", f"# {'Ä' * 400}\n\n{sentences}\n\n{wide}\n")
    assert len(passages) > 5
    assert all(len(text) <= LONGEST_CHARS for _, text in passages)
    assert all(text.endswith(".") for _, text in passages[:-4])  # cut between sentences
    write(tmp_path, {"long.md": f"# {'Ä' * 400}\n\n{sentences}\n\n{wide}\n"})
    for passage in split(read(tmp_path / "long.md", tmp_path, **LIMITS)):
        assert tokens_at_most(passage.embedded) <= MAX_INPUT_BYTES <= 8192
