"""docs/ARCHITECTURE.md stays true: its node and graph lists name exactly what the registry and graphs/ hold."""

from __future__ import annotations

import re
from pathlib import Path

from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[1]


def _section(start: str) -> str:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text("utf-8")
    begin = text.index(start)
    return text[begin : text.index("\n- **", begin + 1)]


def test_the_node_list_names_every_registered_node_type_and_no_other():
    named = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", _section("- **Nodes**")))
    assert named == {spec.type for spec in default_registry().specs()}


def test_the_graph_list_names_every_shipped_graph_and_no_other():
    named = set(re.findall(r"`([a-z0-9_]+\.json)`", _section("- **Shipped graphs**")))
    assert named == {path.name for path in (ROOT / "graphs").glob("*.json")}
