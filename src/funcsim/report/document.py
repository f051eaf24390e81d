"""A tiny document model rendered twice: ``report.md`` and a self-contained ``report.html``.

The report is a list of blocks (:class:`Heading`, :class:`Paragraph`, :class:`Bullets`,
:class:`TableBlock`, :class:`FigureBlock`). Markdown links the figure files; HTML embeds each
figure as a base64 PNG and carries its own CSS, so the page needs nothing but itself (no
external stylesheet, font, script or image).

Inline markup understood in text: ``**bold**``, ``*italic*`` and ```code```.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from funcsim.report.tables import Table, to_html, to_markdown


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class TableBlock:
    table: Table
    number: int = 0
    """``Table <number>:`` prefix of the caption (0: none)."""


@dataclass(frozen=True)
class FigureBlock:
    png: Path
    """Relative to the report folder."""
    caption: str
    number: int = 0
    alt: str = ""


Block = Heading | Paragraph | Bullets | TableBlock | FigureBlock


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


def _numbered(prefix: str, number: int, caption: str) -> str:
    return f"{prefix} {number}: {caption}" if number else caption


# --------------------------------------------------------------------------- Markdown


def to_markdown_document(doc: Document) -> str:
    out = [f"# {doc.title}\n"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Paragraph):
            out.append(block.text + "\n")
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items) + "\n")
        elif isinstance(block, TableBlock):
            table = block.table
            caption = _numbered("Table", block.number, table.caption)
            out.append(to_markdown(_with_caption(table, caption)))
        elif isinstance(block, FigureBlock):
            caption = _numbered("Figure", block.number, block.caption)
            alt = block.alt or block.caption
            out.append(f"![{alt}]({block.png.as_posix()})\n\n*{caption}*\n")
    return "\n".join(out)


def _with_caption(table: Table, caption: str) -> Table:
    return Table(
        columns=table.columns,
        rows=table.rows,
        caption=caption,
        groups=table.groups,
        align=table.align,
        notes=table.notes,
        flat_columns=table.flat_columns,
    )


# --------------------------------------------------------------------------- HTML

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --rule: #d0d4d9; --accent: #1f4e9c; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 60rem; padding: 2rem 1.5rem 4rem; color: var(--fg);
  font: 16px/1.55 Georgia, "Times New Roman", serif; background: #fff; }
h1 { font-size: 1.9rem; line-height: 1.25; margin: 0 0 1rem; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 0.6rem; border-bottom: 1px solid var(--rule);
  padding-bottom: 0.2rem; }
h3 { font-size: 1.1rem; margin: 1.6rem 0 0.5rem; }
p, li { max-width: 52rem; }
code { font: 0.88em ui-monospace, Menlo, Consolas, monospace; background: #f3f4f6;
  padding: 0.05em 0.3em; border-radius: 3px; }
.table-wrap { overflow-x: auto; margin: 1rem 0 1.4rem; }
table { border-collapse: collapse; font: 13px/1.4 -apple-system, "Segoe UI", Helvetica,
  Arial, sans-serif; border-top: 2px solid var(--fg); border-bottom: 2px solid var(--fg); }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.4rem;
  font-family: Georgia, serif; font-size: 14px; }
th, td { padding: 0.25rem 0.6rem; white-space: nowrap; }
thead tr:last-child th { border-bottom: 1px solid var(--fg); }
th.grp { border-bottom: 1px solid var(--rule); text-align: center; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.l, th.l { text-align: left; }
tbody tr:nth-child(even) { background: #f7f8fa; }
p.notes { font-size: 0.85rem; color: var(--muted); margin-top: 0.3rem; }
figure { margin: 1.2rem 0 1.8rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { font-size: 0.9rem; color: var(--muted); margin-top: 0.4rem; }
footer { margin-top: 3rem; font-size: 0.8rem; color: var(--muted); }
"""


def inline_html(text: str) -> str:
    """Escape ``text`` and render ``**bold**``, ``*italic*`` and ```code``` spans.

    >>> inline_html("a **b** <c> `d` *e*")
    'a <strong>b</strong> &lt;c&gt; <code>d</code> <em>e</em>'
    """
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])", r"<em>\1</em>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _figure_html(block: FigureBlock, report_dir: Path) -> str:
    data = base64.b64encode((report_dir / block.png).read_bytes()).decode("ascii")
    caption = _numbered("Figure", block.number, block.caption)
    alt = html.escape(block.alt or block.caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{inline_html(caption)}</figcaption></figure>"
    )


def to_html_document(doc: Document, report_dir: Path, footer: str = "") -> str:
    """A standalone HTML page; figures are read from ``report_dir`` and embedded."""
    body = [f"<h1>{inline_html(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(6, max(2, block.level))
            body.append(f"<h{level}>{inline_html(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{inline_html(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, TableBlock):
            caption = _numbered("Table", block.number, block.table.caption)
            table = to_html(_with_caption(block.table, caption))
            body.append(f'<div class="table-wrap">{table}</div>')
        elif isinstance(block, FigureBlock):
            body.append(_figure_html(block, report_dir))
    if footer:
        body.append(f"<footer>{inline_html(footer)}</footer>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
