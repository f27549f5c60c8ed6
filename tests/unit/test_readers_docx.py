"""Word documents (python-docx), running PDF headers/footers, and unknown extensions
inside a directory reported as ``skipped``."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_ray.common.readers import (ReadError, drop_repeated_page_lines, list_files, read_file,
                                       skipped_extensions)


def _docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = "Lumen T3 installation guide"
    document.add_heading("Installation", level=1)
    document.add_paragraph("Turn off power at the breaker before removing the old thermostat.")
    document.add_heading("Wiring", level=2)
    document.add_paragraph("Connect the C wire first.", style="List Bullet")
    table = document.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Terminal", "Wire colour"), ("R", "red"), ("C", "blue")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    document.add_paragraph("Restore power and follow the on-screen setup.")
    document.save(str(path))
    return path


def test_docx_paragraphs_headings_tables_in_order(tmp_path):
    docs = read_file(str(_docx(tmp_path / "guide.docx")))
    assert len(docs) == 1 and docs[0]["title"] == "Lumen T3 installation guide"
    text = docs[0]["text"]
    assert "# Installation" in text and "## Wiring" in text and "- Connect the C wire first." in text
    assert "Terminal | Wire colour\nR | red\nC | blue" in text
    order = [text.index(s) for s in ("# Installation", "Turn off power", "## Wiring", "Terminal |", "Restore power")]
    assert order == sorted(order)


def test_bad_docx_is_a_read_error(tmp_path):
    (tmp_path / "empty.docx").write_bytes(b"")
    (tmp_path / "fake.docx").write_text("not a zip", encoding="utf-8")
    for name, reason in (("empty.docx", "empty"), ("fake.docx", "corrupt Word")):
        with pytest.raises(ReadError, match=reason):
            read_file(str(tmp_path / name))


def _pdf(path: Path, pages: list[list[str]]) -> Path:
    """A minimal PDF (Helvetica text, one line per string) written by hand."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 760 Td"]
        for line in lines:
            ops.append("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode("latin-1") + stream + b"\nendstream")
        content = len(objects)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(len(objects))
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        body = body if isinstance(body, bytes) else body.encode("latin-1")
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def test_pdf_running_headers_and_footers_dropped(tmp_path):
    body = [
        ["The thermostat learns your schedule in the first week.", "Keep the sensor away from direct sunlight."],
        ["Error E12 means the changeover setting is reversed.", "ACME Corp - Confidential appears in this body line."],
        ["Replace the furnace filter every three months.", "The warranty lasts two years."],
        ["Support answers within one business day.", "Firmware updates install at night."],
    ]
    pages = [["ACME Corp - Confidential", "Lumen T3 manual"] + lines + [f"Page {i} of 4"] for i, lines in enumerate(body, 1)]
    docs = read_file(str(_pdf(tmp_path / "manual.pdf", pages)))
    text = docs[0]["text"]
    assert "Lumen T3 manual" not in text and "Page 2 of 4" not in text
    assert text.count("ACME Corp - Confidential") == 1  # the body sentence that quotes it stays
    for lines in body:
        for line in lines:
            assert line in text


def test_repeated_lines_need_enough_pages():
    two = ["Header\nbody one", "Header\nbody two"]
    assert drop_repeated_page_lines(two) == two
    three = ["Header\nbody one\n1", "Header\nbody two\n2", "Other\nbody three\n3"]
    # Page numbers are on every page (numbers masked): dropped; "Header" on 2 of 3: kept.
    assert drop_repeated_page_lines(three) == ["Header\nbody one", "Header\nbody two", "Other\nbody three"]


def test_unknown_extensions_are_counted_not_silently_skipped(tmp_path):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / ".git").mkdir()
    for name in ("a.md", "b.docx", "c.xlsx", "sub/d.xlsx", "sub/e.PNG", "README", ".hidden.xlsx", ".git/x.pack"):
        (d / name).write_bytes(b"x")
    assert [Path(f).name for f in list_files([str(d)])] == ["a.md", "b.docx"]
    assert skipped_extensions([str(d)]) == {"(none)": 1, ".png": 1, ".xlsx": 2}
    # A file named explicitly is never "skipped": it is read (and errors if unsupported).
    assert skipped_extensions([str(d / "c.xlsx")]) == {}
