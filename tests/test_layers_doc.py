"""docs/development.md draws the layers and import contracts of pyproject.toml: the two must match."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict[str, Any]]:
    with open(ROOT / "pyproject.toml", "rb") as stream:
        contracts: list[dict[str, Any]] = tomllib.load(stream)["tool"]["importlinter"]["contracts"]
    return contracts


def _section() -> tuple[str, list[str]]:
    """The "Layers and import contracts" section of docs/development.md, and its picture's lines."""
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("## Layers and import contracts", 1)[1].split("\n## ", 1)[0]
    picture = re.search(r"```text\n(.*?)```", section, re.S)
    assert picture, "the section lost its picture"
    return section, picture.group(1).splitlines()


def _named(module: str, text: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(module)}(?![\w.])", text) is not None


def _line_of(picture: list[str], module: str) -> int:
    found = [n for n, line in enumerate(picture) if _named(module, line)]
    assert found, f"the picture does not show {module}"
    return found[0]


def test_the_picture_draws_the_layers_in_order_one_line_each() -> None:
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    _, picture = _section()
    previous = -1
    for layer in layers:
        lines = {_line_of(picture, module.strip()) for module in layer.split("|")}
        assert len(lines) == 1, f"the layer {layer!r} is not drawn on one line"
        (line,) = lines
        assert line > previous, f"the layer {layer!r} is drawn above the one before it"
        previous = line


def test_the_section_names_every_forbidden_import_and_exception() -> None:
    section, picture = _section()
    drawn = "\n".join(picture)
    for contract in _contracts():
        if contract["type"] != "forbidden":
            continue
        for module in contract["forbidden_modules"]:
            where = drawn if contract["source_modules"] == ["actors"] else section
            assert _named(module, where), (
                f"docs/development.md does not show the contract {contract['name']!r} ({module})"
            )
        for ignored in contract.get("ignore_imports", []):
            importer = ignored.split(" -> ")[0].removesuffix(".**").removeprefix("actors.")
            assert importer in section, f"docs/development.md does not name the exception {ignored!r}"
