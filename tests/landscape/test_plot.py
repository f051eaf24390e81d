"""plot_landscape writes a PNG and a parseable SVG; LandscapeItem validates itself."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from funcsim.errors import DataError
from funcsim.landscape import KINDS, LandscapeItem, plot_landscape

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def example() -> tuple[np.ndarray, list[LandscapeItem]]:
    """A base and an independent trajectory (4 epochs each), a distilled one, 3 post-hoc."""
    rng = np.random.default_rng(0)
    emb = np.cumsum(rng.normal(size=(15, 2)), axis=0)
    items = [
        LandscapeItem("base (seed 0)", "base", 0, 4),
        LandscapeItem("seed 1", "independent", 4, 8),
        LandscapeItem("distill a=0.5", "distill", 8, 12),
        LandscapeItem("int8", "quantize", 12, 13),
        LandscapeItem("prune 30%", "prune", 13, 14),
        LandscapeItem("prune 90%", "prune", 14, 15),
    ]
    return emb, items


def test_writes_png_and_svg(tmp_path: Path) -> None:
    emb, items = example()
    png, svg = plot_landscape(emb, items, title="digits / lenet", path=tmp_path / "fig" / "land")
    assert png == tmp_path / "fig" / "land.png" and svg == tmp_path / "fig" / "land.svg"
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text()
    for item in items:
        assert item.label in text  # legend / annotations kept as text (svg.fonttype none)
    assert not list(tmp_path.glob("fig/.*"))  # no temporary files left behind


def test_suffix_is_replaced_and_svg_is_reproducible(tmp_path: Path) -> None:
    emb, items = example()
    _, svg1 = plot_landscape(emb, items, path=tmp_path / "a.png")
    first = svg1.read_text()
    _, svg2 = plot_landscape(emb, items, path=tmp_path / "a.svg")
    assert svg1 == svg2 == tmp_path / "a.svg"
    assert svg2.read_text() == first


def test_all_kinds_drawable(tmp_path: Path) -> None:
    emb = np.arange(2 * len(KINDS) * 2, dtype=float).reshape(-1, 2)
    items = [LandscapeItem(k, k, 2 * i, 2 * i + (1 if i % 2 else 2)) for i, k in enumerate(KINDS)]
    png, _ = plot_landscape(emb, items, path=tmp_path / "kinds", annotate=False)
    assert png.stat().st_size > 0


def test_invalid_items_and_embeddings(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="kind"):
        LandscapeItem("x", "teacher", 0, 1)
    with pytest.raises(DataError, match="start < stop"):
        LandscapeItem("x", "base", 3, 3)
    emb, items = example()
    with pytest.raises(DataError, match="exceed"):
        plot_landscape(emb[:10], items, path=tmp_path / "x")
    with pytest.raises(DataError, match=r"\(K, 2\)"):
        plot_landscape(np.zeros((15, 3)), items, path=tmp_path / "x")
    assert LandscapeItem("b", "base", 0, 4).is_trajectory
    assert not LandscapeItem("q", "quantize", 4, 5).is_trajectory
