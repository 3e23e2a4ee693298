"""Reading files for ingestion: text, Markdown, HTML (headings kept as Markdown) and
PDF become text; every unusable file gets an error that names it and says why."""

from __future__ import annotations

import pytest

from hangar.errors import DocumentError, DocumentTooLargeError
from hangar.memory.documents import html_text, kind_of, read_document
from tests.memory.pdf import pdf_with_text


def test_html_keeps_headings_and_visible_text_only() -> None:
    page = """<!doctype html><html><head><title>T</title><style>p{color:red}</style></head>
    <body><h1>Install</h1><p>Run   the
    installer.</p><script>alert('x')</script><h2>On <b>Linux</b></h2><p>Use apt &amp; go.</p>
    </body></html>"""
    assert html_text(page) == "# Install\n\nRun the installer.\n\n## On Linux\n\nUse apt & go."
    document = read_document("page.html", page.encode())
    assert document.markdown


def test_a_pdf_gives_its_text() -> None:
    document = read_document("manual.pdf", pdf_with_text("The relay clicks twice.", "Page end."))
    assert "The relay clicks twice." in document.text
    assert not document.markdown


def test_kinds_come_from_the_bytes_then_the_content_type_then_the_name() -> None:
    assert kind_of("notes.txt", None, b"%PDF-1.7 ...") == "pdf"
    assert kind_of("download", "text/html; charset=utf-8") == "html"
    assert kind_of("README.md") == "markdown"
    assert kind_of("page", None, b"  <!DOCTYPE html><html>") == "html"
    assert kind_of("data.log") == "text"


def test_latin1_text_is_read_not_refused() -> None:
    assert read_document("old.txt", "café crème".encode("latin-1")).text == "café crème"


@pytest.mark.parametrize(
    ("name", "data", "code", "says"),
    [
        ("empty.md", b"", "unreadable_document", "empty.md is empty"),
        ("blank.txt", b"  \n\t\n", "unreadable_document", "blank.txt is empty"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "unreadable_document", "binary"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Cat", "unreadable_document", "not a readable"),
        ("scan.pdf", pdf_with_text(), "unreadable_document", "without text"),
    ],
)
def test_unusable_files_say_which_and_why(name: str, data: bytes, code: str, says: str) -> None:
    with pytest.raises(DocumentError) as caught:
        read_document(name, data)
    assert caught.value.code == code
    assert says in caught.value.message
    assert caught.value.details["source"] == name


def test_a_file_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(DocumentTooLargeError) as caught:
        read_document("huge.txt", b"x" * 2048, limit=1024)
    assert caught.value.code == "document_too_large"
    assert "split it" in (caught.value.hint or "")
