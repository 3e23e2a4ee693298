"""From a file's bytes to text a chunker can cut: plain text, Markdown, HTML, PDF.

HTML becomes Markdown-like text (its headings as ``#`` lines, scripts and styles
dropped), so that the chunker's heading paths work for web pages as for Markdown.
Every way a file can be unusable is a ``DocumentError`` that says which file and
what to do, so one bad file in a folder is reported, not fatal.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath

from hangar.errors import DocumentError, DocumentTooLargeError

MAX_BYTES = 32 * 1024 * 1024
"""The largest file ingested (32 MiB): larger ones are refused with an error that
says to split them, before any of it is read into memory."""

KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
CONTENT_TYPES = {
    "text/markdown": "markdown",
    "text/plain": "text",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
}


@dataclass(frozen=True)
class Upload:
    """A file sent with an ingestion request: its bytes, or only its size when it is
    over the limit (its error is reported without reading it)."""

    name: str
    data: bytes | None
    size: int
    content_type: str | None = None


@dataclass(frozen=True)
class Document:
    """A source's text, and whether its headings are Markdown's (for the chunker)."""

    source: str
    text: str
    markdown: bool


def kind_of(name: str, content_type: str | None = None, head: bytes = b"") -> str:
    """What a file is, by its first bytes, then its content type, then its name."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if content_type:
        found = CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if found:
            return found
    suffix = PurePosixPath(name.split("?")[0]).suffix.lower()
    if suffix in KINDS:
        return KINDS[suffix]
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "html"
    return "text"


def check_size(source: str, size: int, limit: int = MAX_BYTES) -> None:
    if size > limit:
        raise DocumentTooLargeError(
            f"{source} is {size / 1024 / 1024:.1f} MiB, more than the {limit // 1024 // 1024} "
            "MiB a file may have",
            hint="split it into smaller files and ingest those",
            details={"source": source, "bytes": size, "max_bytes": limit},
        )


def read_document(
    source: str, data: bytes, content_type: str | None = None, limit: int = MAX_BYTES
) -> Document:
    """The text of one file, or a ``DocumentError`` saying why there is none."""
    check_size(source, len(data), limit)
    if not data.strip():
        raise DocumentError(
            f"{source} is empty: there is nothing to index",
            hint="check the file, or leave it out",
            details={"source": source},
        )
    kind = kind_of(source, content_type, data[:64])
    if kind == "pdf":
        return Document(source, _pdf_text(source, data), markdown=False)
    text = _decode(source, data)
    if kind == "html":
        return Document(source, html_text(text), markdown=True)
    return Document(source, text, markdown=kind == "markdown")


def _decode(source: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError(
            f"{source} is binary, not text, Markdown, HTML or PDF",
            hint="ingest the document's text, Markdown, HTML or PDF form",
            details={"source": source},
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        try:  # much older text is Latin-1 (or Windows-1252), which any bytes decode as
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise DocumentError(
                f"{source} is not UTF-8 text (byte {exc.start} is not valid) and not PDF",
                hint="convert it to UTF-8",
                details={"source": source},
            ) from None
        return text


def _pdf_text(source: str, data: bytes) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise DocumentError(
            f"{source} is a PDF, and reading PDFs needs pypdf",
            hint="pip install 'hangar[memory]'",
            details={"source": source},
        ) from None
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise DocumentError(
            f"{source} is not a readable PDF: {exc}",
            hint="check that the file is whole (re-export or re-download it)",
            details={"source": source},
        ) from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise DocumentError(
            f"{source} is a PDF without text (scanned pages, perhaps): nothing to index",
            hint="run it through OCR first and ingest the result",
            details={"source": source},
        )
    return text


BLOCKS = {"p", "div", "section", "article", "li", "tr", "br", "pre", "blockquote", "table"}
SKIPPED = {"script", "style", "noscript", "template", "svg", "head"}
SPACES = re.compile(r"\s+")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.preformatted = 0
        self.heading: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.preformatted += tag == "pre"
        if tag in SKIPPED:
            self.skipping += 1
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.heading = int(tag[1])
            self.out.append("\n\n" + "#" * self.heading + " ")
        elif tag in BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.preformatted = max(0, self.preformatted - 1)
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif self.heading is not None and tag == f"h{self.heading}":
            self.heading = None
            self.out.append("\n\n")
        elif tag in BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        # Line breaks in HTML source are spaces, except in <pre>.
        self.out.append(data if self.preformatted else SPACES.sub(" ", data))


def html_text(html: str) -> str:
    """An HTML page's visible text, headings as Markdown ``#`` lines."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
