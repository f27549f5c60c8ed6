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

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".jsonl"}

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

    Hidden files and directories inside a directory are skipped; a file named explicitly
    is returned whatever its suffix (the reader reports an unsupported one as an error).
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
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise ReadError("PDF has no extractable text")
    return [{"source": source, "title": str(meta_title) or _title_from_text(text, Path(path).stem), "text": text, "metadata": {"pages": len(pages)}}]


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
