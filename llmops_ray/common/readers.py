"""Readers: one file -> a list of documents (``source``, ``title``, ``text``, ``metadata``).

``source`` is the path as given (joined with the relative path inside a directory); a JSONL
record's source is ``<path>#<id>``. A file that cannot be read raises :class:`ReadError`
with a one-line reason; the pipeline reports it in ``errors`` and goes on.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".jsonl", ".docx"}

# HTML elements that are never main text.
_DROP_TAGS = ["script", "style", "noscript", "nav", "footer", "header", "aside", "form", "iframe", "svg", "button", "template"]
# class/id/role words that mark boilerplate blocks (cookie banners, menus, share bars...).
_BOILERPLATE_RE = re.compile(
    r"cookie|consent|gdpr|banner|advert|\bads?\b|sidebar|menu|breadcrumb|share|social|newsletter|subscribe|popup|modal|skip-link|related",
    re.I,
)
_BLOCK_TAGS = {"p", "div", "section", "article", "main", "li", "tr", "br", "pre", "blockquote", "table", "ul", "ol", "dd", "dt"}


class ReadError(Exception):
    """A file that cannot be turned into text (empty, corrupt, undecodable)."""


def list_files(paths: list[str]) -> list[str]:
    """Supported files under ``paths`` (files as given, directories recursively), sorted.

    Hidden files and directories inside a directory are skipped; other files there that no
    reader handles are left out and counted by :func:`skipped_extensions` (the ingest
    summary's ``skipped``); a file named explicitly is returned whatever its suffix (the
    reader reports an unsupported one as an error).
    """
    found: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in files:
                    if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                        found.add(str(Path(root) / name))
        else:
            found.add(str(path))
    return sorted(found)


def skipped_extensions(paths: list[str]) -> dict[str, int]:
    """Extension -> count of the files inside the directories of ``paths`` that no reader
    handles (``list_files`` leaves them out; the ingest summary reports them as ``skipped``).
    Hidden files and directories are not counted: they are skipped on purpose. A file without
    an extension counts as ``(none)``."""
    counts: dict[str, int] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                suffix = Path(name).suffix.lower()
                if not name.startswith(".") and suffix not in SUPPORTED_SUFFIXES:
                    key = suffix or "(none)"
                    counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _decode(data: bytes) -> str:
    if not data.strip():
        raise ReadError("empty file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:4096]:
        raise ReadError("binary content (NUL bytes), not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(f"not valid UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            heading = re.match(r"^#{1,6}\s+(.*)", line)
            if heading:
                return heading.group(1).strip()[:200]
            break
    return fallback


def read_text_file(path: str, source: str) -> list[dict[str, Any]]:
    text = _decode(Path(path).read_bytes())
    return [{"source": source, "title": _title_from_text(text, Path(path).stem), "text": text, "metadata": {}}]


def html_to_text(html: str) -> tuple[str, str]:
    """(title, main text) of an HTML page; headings become markdown headings for the chunker."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed:
            continue
        marks = " ".join([tag.get("id") or "", " ".join(tag.get("class") or []), tag.get("role") or ""])
        if marks.strip() and _BOILERPLATE_RE.search(marks) and tag.name not in ("main", "article", "body", "html"):
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.find(attrs={"role": "main"}) or soup.body or soup
    for level in range(1, 7):
        for h in root.find_all(f"h{level}"):
            h.replace_with(soup.new_string("\n\n" + "#" * level + " " + h.get_text(" ", strip=True) + "\n\n"))
    for tag in root.find_all(_BLOCK_TAGS):
        tag.insert_before(soup.new_string("\n\n" if tag.name != "br" else "\n"))
    text = root.get_text("")
    if not title:
        h1 = re.search(r"^# (.+)$", text, re.M)
        title = h1.group(1).strip() if h1 else ""
    return title, text


def read_html(path: str, source: str) -> list[dict[str, Any]]:
    title, text = html_to_text(_decode(Path(path).read_bytes()))
    if not text.strip():
        raise ReadError("no main text in the HTML page")
    return [{"source": source, "title": title or Path(path).stem, "text": text, "metadata": {}}]


def read_pdf(path: str, source: str) -> list[dict[str, Any]]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    data = Path(path).read_bytes()
    if not data.strip():
        raise ReadError("empty file")
    try:
        import io

        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ReadError("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except ReadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ReadError(f"corrupt PDF ({type(exc).__name__}: {str(exc)[:120]})") from exc
    pages = drop_repeated_page_lines(pages)
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise ReadError("PDF has no extractable text")
    return [{"source": source, "title": str(meta_title) or _title_from_text(text, Path(path).stem), "text": text, "metadata": {"pages": len(pages)}}]


# Lines at each end of a page that may be a running header or footer.
PAGE_EDGE_LINES = 3
_DIGITS = re.compile(r"\d+")


def _edge_key(line: str) -> str:
    """A page-edge line with its numbers masked: ``Page 3 of 9`` and ``Page 4 of 9`` (or a
    bare ``3`` and ``4``) are the same running line."""
    return _DIGITS.sub("#", " ".join(line.split())).lower()


def drop_repeated_page_lines(pages: list[str], min_pages: int = 3, share: float = 0.5) -> list[str]:
    """Pages without their running headers and footers.

    A line among the first or last :data:`PAGE_EDGE_LINES` non-empty lines of a page is a
    header/footer when the same line (numbers masked) is at an edge of more than ``share``
    of the pages, and of at least ``min_pages`` pages (with fewer pages a repeat proves
    nothing). Only edge lines are dropped: the same sentence in the body stays.
    """
    texts = [p or "" for p in pages]
    if len(texts) < min_pages:
        return texts
    seen: dict[str, int] = {}
    edges_of_page = []
    for text in texts:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        edge = set(range(min(PAGE_EDGE_LINES, len(lines)))) | set(range(max(0, len(lines) - PAGE_EDGE_LINES), len(lines)))
        keys = {_edge_key(lines[i]) for i in edge}
        edges_of_page.append((lines, edge))
        for key in keys:
            seen[key] = seen.get(key, 0) + 1
    needed = max(min_pages, int(share * len(texts)) + 1)
    repeated = {key for key, n in seen.items() if n >= needed}
    if not repeated:
        return texts
    out = []
    for lines, edge in edges_of_page:
        out.append("\n".join(ln for i, ln in enumerate(lines) if not (i in edge and _edge_key(ln) in repeated)))
    return out


def _docx_blocks(document) -> list[str]:
    """Paragraphs and tables of a Word document in reading order: headings as markdown
    headings (the chunker splits on them), list items as ``- ``, each table row as
    ``cell | cell``."""
    from docx.table import Table

    blocks: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = []
            for row in item.rows:
                cells: list[str] = []
                for cell in row.cells:  # a merged cell is returned once per grid column it spans
                    text = " ".join(cell.text.split())
                    if not cells or text != cells[-1]:
                        cells.append(text)
                if any(cells):
                    rows.append(" | ".join(cells))
            if rows:
                blocks.append("\n".join(rows))
            continue
        text = item.text.strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        heading = re.match(r"Heading (\d)", style)
        if style == "Title":
            blocks.append(f"# {text}")
        elif heading:
            blocks.append("#" * min(6, int(heading.group(1))) + " " + text)
        elif style.startswith("List"):
            blocks.append(f"- {text}")
        else:
            blocks.append(text)
    return blocks


def read_docx(path: str, source: str) -> list[dict[str, Any]]:
    """A Word (.docx) document through python-docx: paragraphs, headings and tables as text."""
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    if Path(path).stat().st_size == 0:
        raise ReadError("empty file")
    try:
        document = docx.Document(path)
        blocks = _docx_blocks(document)
        meta_title = document.core_properties.title or ""
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ReadError(f"corrupt Word document ({type(exc).__name__}: {str(exc)[:120]})") from exc
    text = "\n\n".join(blocks)
    if not text.strip():
        raise ReadError("Word document has no text")
    return [{"source": source, "title": meta_title or _title_from_text(text, Path(path).stem), "text": text,
             "metadata": {}}]


def read_jsonl(path: str, source: str) -> list[dict[str, Any]]:
    """Each line is a record with ``id`` and ``text`` (optional ``title``, other keys = metadata).

    A bad line is an error of that line only: it is returned as a record with ``error`` set.
    """
    raw = _decode(Path(path).read_bytes())
    docs: list[dict[str, Any]] = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            docs.append({"source": f"{source}#line{lineno}", "error": f"invalid JSON on line {lineno}: {exc.msg}"})
            continue
        if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("text"), str):
            docs.append({"source": f"{source}#line{lineno}", "error": f"line {lineno}: a record needs 'id' and a string 'text'"})
            continue
        rid = str(record["id"])
        meta = {k: v for k, v in record.items() if k not in ("id", "text", "title")}
        docs.append({"source": f"{source}#{rid}", "title": str(record.get("title") or rid), "text": record["text"], "metadata": meta})
    if not docs:
        raise ReadError("no records in the JSONL file")
    return docs


READERS = {
    ".md": read_text_file,
    ".markdown": read_text_file,
    ".txt": read_text_file,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".jsonl": read_jsonl,
    ".docx": read_docx,
}


def read_file(path: str, source: str | None = None) -> list[dict[str, Any]]:
    """Documents of one file; raises :class:`ReadError` when it cannot be read.

    ``source`` labels the documents (default: ``path``); the pipeline reads an absolute
    path (workers may run in another directory) and labels with the path as given.
    """
    reader = READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise ReadError(f"unsupported file type {Path(path).suffix or '(none)'!r}")
    try:
        return reader(path, source or path)
    except OSError as exc:
        raise ReadError(exc.strerror or str(exc)) from exc
