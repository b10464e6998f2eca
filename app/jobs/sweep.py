"""Sweeps: one graph, many runs with different param values (InvokeAI's batch semantics).

A sweep is a list of groups; a group maps `node.param` targets to equal-length value lists. Values are
zipped within a group (the i-th prompt goes with the i-th negative), groups multiply (every prompt with
every seed), and the whole repeats `runs` times. The count is computed and capped before anything is
expanded. Values given as text (the command line) are parsed by each param's type; values given as JSON
(the HTTP API) are checked as they are. On the command line a value list is `v1,v2,...` (a `\\,` is a
comma inside a value), `a..b` (whole numbers a to b, both included) or `@file.txt` (one value a line).
Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from app.graph import serialize
from app.graph.model import Graph

MAX_JOBS = 10_000  # one sweep may enqueue at most this many jobs (a typo like 1..1000000 is refused)


class SweepProblem(ValueError):
    """A set or sweep that cannot apply; the message names the target and says why."""


def typed_value(graph: Graph, registry: Any, target: str, value: Any) -> tuple[str, str, Any]:
    """(node, param, value) for `node.param` = value: text parsed by the param's type, other values
    checked as they are (a whole number is taken for a float param)."""
    node_id, dot, name = target.partition(".")
    if not dot or not node_id or not name:
        raise SweepProblem(f"{target!r}: expected NODE.PARAM")
    if node_id not in graph.nodes:
        raise SweepProblem(f"{target!r}: the graph has no node {node_id!r} (nodes: {', '.join(graph.nodes)})")
    spec = registry.get(graph.nodes[node_id].type)
    param = spec.param(name) if spec else None
    if param is None:
        known = ", ".join(p.name for p in spec.params) if spec else "unknown node type"
        raise SweepProblem(f"{target!r}: node {node_id!r} has no param {name!r} (params: {known})")
    if graph.input_edge(node_id, name) is not None:
        raise SweepProblem(f"{target!r}: {node_id}.{name} is fed by a link; set the node it comes from")
    if isinstance(value, str):
        try:
            value = param.parse(value)
        except ValueError as error:
            raise SweepProblem(f"{target!r}: {error}") from None
    elif param.type == "FLOAT" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    problem = param.check(value)
    if problem:
        raise SweepProblem(f"{target!r}: {problem}")
    return node_id, name, value


def values_from_text(text: str, base: Path | None = None) -> list[str]:
    """A command-line value list: `@file` (one value a line, blank lines skipped), `a..b` (whole
    numbers), or comma-separated values (`\\,` keeps a comma)."""
    if text.startswith("@"):
        path = (base or Path.cwd()) / text[1:]
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise SweepProblem(
                f"cannot read the values file {path} ({getattr(error, 'strerror', None) or error})"
            ) from None
        values = [line.strip() for line in lines if line.strip()]
        if not values:
            raise SweepProblem(f"the values file {path} has no values")
        return values
    low, dots, high = text.partition("..")
    if dots and _whole(low) and _whole(high):
        first, last = int(low), int(high)
        if last < first:
            raise SweepProblem(f"{text!r}: the range ends before it starts")
        if last - first + 1 > MAX_JOBS:
            raise SweepProblem(
                f"{text!r}: {last - first + 1} values, more than the {MAX_JOBS} one sweep may run"
            )
        return [str(v) for v in range(first, last + 1)]
    parts = [p.replace("\0", ",") for p in text.replace("\\,", "\0").split(",")]
    return parts


def _whole(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def count(groups: list[dict[str, list[Any]]], runs: int = 1) -> int:
    """How many jobs the sweep makes (checking that each group's lists have one length)."""
    total = max(1, runs)
    for group in groups:
        lengths = {target: len(values) for target, values in group.items()}
        if len(set(lengths.values())) > 1:
            said = ", ".join(f"{t} has {n}" for t, n in lengths.items())
            raise SweepProblem(f"values zipped together need one length: {said}")
        if 0 in lengths.values():
            raise SweepProblem(f"{next(t for t, n in lengths.items() if n == 0)}: no values")
        total *= next(iter(lengths.values()), 1)
    return total


def expand(
    graph: Graph, registry: Any, groups: list[dict[str, list[Any]]], sets: dict[str, Any] | None = None,
    runs: int = 1, cap: int = MAX_JOBS,
) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """(graph JSON, the values it got) per job, in order: the last group varies fastest, runs outermost."""
    total = count(groups, runs)
    if total > cap:
        raise SweepProblem(f"this sweep makes {total} jobs, more than the {cap} one sweep may enqueue")
    base = json.loads(json.dumps(serialize.to_dict(graph)))  # a copy: never the graph's own params
    for target, value in (sets or {}).items():  # --set / "set": the same for every job
        node_id, name, typed = typed_value(graph, registry, target, value)
        base["nodes"][node_id].setdefault("params", {})[name] = typed
    typed_groups = []
    for group in groups:
        targets = list(group)
        rows = [
            [typed_value(graph, registry, t, v)[2] for t, v in zip(targets, row, strict=True)]
            for row in zip(*(group[t] for t in targets), strict=True)
        ]
        typed_groups.append([dict(zip(targets, row, strict=True)) for row in rows])
    text = json.dumps(base)
    jobs = []
    for _run in range(max(1, runs)):
        for combo in itertools.product(*typed_groups):
            values: dict[str, Any] = {}
            for part in combo:
                values.update(part)
            data = json.loads(text)
            for target, value in values.items():
                node_id, _, name = target.partition(".")
                data["nodes"][node_id].setdefault("params", {})[name] = value
            jobs.append((json.dumps(data), values))
    return jobs
