"""PDF documents (statements, reports) with fpdf2 and an embedded TrueType font that renders
Traditional Chinese. The font is a file on disk (`settlement.pdf_font`; Debian's
fonts-arphic-bsmi00lp by default, which `make test` installs); without it a PDF answers 503
`pdf_unavailable` instead of a document with missing glyphs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from fpdf import FPDF, FontFace

from gateway.errors import ApiError

FONT = "cjk"


def _font(path: str) -> str:
    if not Path(path).is_file():
        raise ApiError(
            503,
            "api_error",
            "pdf_unavailable",
            "PDF rendering is not available: the configured font (settlement.pdf_font) is missing",
        )
    return path


def render(
    font_path: str,
    title: str,
    facts: Sequence[tuple[str, str]],
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
) -> bytes:
    """A title, label–value facts, then a table (landscape A4, the font embedded, subset)."""
    pdf = FPDF(orientation="L", format="A4")
    pdf.set_title(title)
    pdf.add_font(FONT, fname=_font(font_path))
    pdf.add_page()
    pdf.set_font(FONT, size=16)
    pdf.cell(text=title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font(FONT, size=10)
    for label, value in facts:
        pdf.cell(60, 6, label)
        pdf.cell(text=value, new_x="LMARGIN", new_y="NEXT")
    if columns:
        pdf.ln(4)
        pdf.set_font(FONT, size=8)
        with pdf.table(text_align="RIGHT", headings_style=FontFace(fill_color=230)) as table:
            for cells in (columns, *rows):
                row = table.row()
                for cell in cells:
                    row.cell(cell)
    return bytes(pdf.output())


def pdf_answer(body: bytes, filename: str) -> web.Response:
    return web.Response(
        body=body,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
