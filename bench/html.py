"""One self-contained HTML page from a Markdown report: tables as HTML, images inlined as base64.

The page opens from disk (no network, no side files): every ``![alt](path)`` of the Markdown is
read relative to ``base`` and embedded as a ``data:`` URI. Markdown is rendered with
markdown-it-py (CommonMark + tables).

Example:
    from bench.html import write_html
    write_html("runs/demo/report.html", markdown_text, base="runs/demo", title="steel-edge demo")
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path
from typing import Optional

from edge.errors import EdgeError
from edge.fsutil import write_text

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1200px;margin:1.5em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right;white-space:nowrap}
th{background:#f1f3f5}td:first-child,th:first-child{text-align:left}td:last-child{white-space:normal;min-width:8em}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;border:1px solid #e3e3e3;margin:.4em 0}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px;font-size:.92em;overflow-wrap:anywhere}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto}
blockquote{border-left:4px solid #2b8a3e;margin:.8em 0;padding:.3em .9em;background:#f3faf4;font-size:1.05em}
"""

_IMG = re.compile(r'<img src="([^"]+)"')


def _data_uri(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise EdgeError(f"cannot inline image {path} into the HTML report: {e.strerror or e}") from None
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def render(markdown_text: str, base: Optional[str | Path] = None, title: str = "report") -> str:
    """The HTML page of ``markdown_text``; images (relative to ``base``) inlined.

    Raises:
        EdgeError: an image the Markdown names cannot be read.
    """
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = md.render(markdown_text)
    base = Path(base) if base is not None else Path.cwd()

    def inline(m: "re.Match[str]") -> str:
        src = html.unescape(m.group(1))
        if src.startswith("data:"):
            return m.group(0)
        if "://" in src:
            raise EdgeError(f"the HTML report must be self-contained, but it names the remote image {src}")
        p = Path(src) if Path(src).is_absolute() else base / src
        return f'<img src="{_data_uri(p)}"'

    body = _IMG.sub(inline, body)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}</body></html>\n")


def write_html(path: str | Path, markdown_text: str, base: Optional[str | Path] = None,
               title: str = "report") -> Path:
    """Render and write the page atomically (nothing half-written on error)."""
    page = render(markdown_text, base=base, title=title)
    return write_text(path, page)
