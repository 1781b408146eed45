"""Self-contained HTML reports: tables rendered, every image inlined, parsed with html.parser."""

import base64
from html.parser import HTMLParser

import pytest

from bench.html import render, write_html
from edge.errors import EdgeError


class Page(HTMLParser):
    """Collects tags, image sources and table cells."""

    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.cells, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(text):
    p = Page()
    p.feed(text)
    p.close()
    return p


def _png(path):
    import cv2
    import numpy as np

    cv2.imwrite(str(path), np.full((4, 6, 3), 200, np.uint8))
    return path


def test_tables_and_inlined_images(tmp_path):
    _png(tmp_path / "plot.png")
    md = "# Title\n\n| a | b |\n|---|---|\n| 1 | <x> |\n\n![plot](plot.png)\n"
    out = write_html(tmp_path / "r.html", md, base=tmp_path, title="t")
    p = parse(out.read_text())
    assert {"html", "head", "title", "style", "table", "img", "h1"} <= set(p.tags)
    assert p.cells == ["a", "b", "1", "<x>"]               # escaped text, not markup
    assert len(p.imgs) == 1 and p.imgs[0].startswith("data:image/png;base64,")
    assert base64.b64decode(p.imgs[0].split(",", 1)[1]) == (tmp_path / "plot.png").read_bytes()
    assert "<script" not in out.read_text() and "plot.png" not in out.read_text().split("<body>")[1].split("alt=")[0]


def test_missing_or_remote_image_is_an_error_and_nothing_is_written(tmp_path):
    with pytest.raises(EdgeError, match="cannot inline image"):
        write_html(tmp_path / "r.html", "![x](nope.png)", base=tmp_path)
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(EdgeError, match="self-contained"):
        render("![x](https://example.com/a.png)")
