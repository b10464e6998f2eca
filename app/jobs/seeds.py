"""Seeds' "control after generate" (ComfyUI's): what a seed param becomes after each queued run.

The mode of each seed param lives in the graph's layout (`layout["seed_control"]["node.param"]`), so it
is saved with the graph and every queued snapshot records it, but never enters a cache key. fixed keeps
the value; increment / decrement step it by one (wrapping inside the seed range); randomize draws a new
one. Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

import random
from typing import Any

from app.graph import types as T
from app.graph.model import Graph
from app.graph.spec import SEED_MAX

CONTROLS = ("fixed", "increment", "decrement", "randomize")
LAYOUT_KEY = "seed_control"


def seed_params(graph: Graph, registry: Any) -> list[tuple[str, str]]:
    """(node, param) of every seed param in the graph, in node order."""
    found = []
    for node in graph:
        spec = registry.get(node.type)
        for param in spec.params if spec is not None else []:
            if param.type == T.SEED:
                found.append((node.id, param.name))
    return found


def control(graph: Graph, node: str, param: str) -> str:
    """A seed param's mode (fixed when none was chosen)."""
    mode = graph.layout.get(LAYOUT_KEY, {}).get(f"{node}.{param}", "fixed")
    return mode if mode in CONTROLS else "fixed"


def next_value(value: int, mode: str, rng: random.Random | None = None) -> int:
    """The seed after one run in `mode`."""
    if mode == "increment":
        return 0 if value >= SEED_MAX else value + 1
    if mode == "decrement":
        return SEED_MAX if value <= 0 else value - 1
    if mode == "randomize":
        return (rng or random.Random()).randint(0, 2**32 - 1)  # ComfyUI-sized: easy to read and retype
    return value


def advanced(graph: Graph, registry: Any, rng: random.Random | None = None) -> dict[tuple[str, str], int]:
    """The new value of every seed param whose mode changes it: {(node, param): value}."""
    changes = {}
    for node, param in seed_params(graph, registry):
        mode = control(graph, node, param)
        spec = registry.get(graph.nodes[node].type)
        value = graph.nodes[node].params.get(param, spec.param(param).default)
        if mode != "fixed" and isinstance(value, int):
            changes[(node, param)] = next_value(value, mode, rng)
    return changes
