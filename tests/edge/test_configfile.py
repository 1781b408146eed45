"""edge.configfile: defaults, then a TOML/YAML file, then the flags; checked by type; paths relative to the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import pytest

from edge.configfile import layered, read_config_file
from edge.errors import EdgeError


@dataclass
class Conf:
    data: Optional[str] = None
    epochs: int = 5
    lr: Optional[float] = None
    sizes: List[int] = field(default_factory=lambda: [1])
    force: bool = False


def test_layers_and_relative_paths(tmp_path):
    f = tmp_path / "sub" / "c.toml"
    f.parent.mkdir()
    f.write_text('[stage]\ndata = "d"\nepochs = 9\nlr = 1\nsizes = [2, 3]\n')
    c = layered(Conf, {"epochs": 4, "force": None, "verbose": 2}, f, "stage", paths=("data",))
    assert (c.data, c.epochs, c.lr, c.sizes, c.force) == (str(f.parent / "d"), 4, 1.0, [2, 3], False)
    assert layered(Conf, {}) == Conf()


def test_yaml_and_errors(tmp_path):
    pytest.importorskip("yaml")
    y = tmp_path / "c.yaml"
    y.write_text("epochs: 3\n")
    assert read_config_file(y) == {"epochs": 3}
    for text, needle in (("force: 1\n", "force must be true or false"), ("nope: 1\n", "unknown setting(s) nope"),
                         ("[1, 2]\n", "must be a table")):
        y.write_text(text)
        with pytest.raises(EdgeError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            layered(Conf, {}, y)
    with pytest.raises(EdgeError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")
