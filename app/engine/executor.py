"""The executor: runs what the requested outputs need, reusing cached results, emitting events.

One run: effective graph (bypass/mute) -> validation of what the targets need -> keys -> walk back
from the targets, stopping at results found in memory or on disk -> run the rest in dependency order.
Events (app/engine/events.py): started, progress, preview, cached, finished (with `duration`), error,
blocked, cancelled, output, warning, model. A failing node keeps every upstream result cached and blocks only what depends on it.
Never import torch or Qt here.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.engine import resources
from app.engine.context import Cancelled, CancelToken, Context, EventSink, NodeError, RunSettings
from app.engine.events import EventKind, ProblemCode, RunStatus
from app.engine.keys import compute_keys
from app.engine.plan import (
    Index,
    Problem,
    ancestors,
    default_targets,
    effective_graph,
    owned,
    param_values,
    said_once,
    topological_order,
    validate,
)
from app.engine.store import DiskStore, MemoryStore
from app.graph import subgraphs
from app.graph.model import Graph
from app.registry import Registry

_CANCELLED = object()  # _run_node's answer when the node stopped on a cancel


@dataclass
class RunResult:
    """What happened: `status` is ok, invalid, error or cancelled."""

    status: RunStatus
    problems: list[Problem] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # target node -> its outputs
    keys: dict[str, str] = field(default_factory=dict)


class Executor:
    """Holds the result stores across runs; `run` one graph at a time. With `capacity` (what a device has:
    app/runtime/device.capacity) each run is estimated first and refused when too large (resources.py)."""

    def __init__(
        self,
        registry: Registry,
        memory: MemoryStore | None = None,
        disk: DiskStore | None = None,
        capacity: Callable[[str], resources.Capacity] | None = None,
    ) -> None:
        self.registry = registry
        self.memory = memory if memory is not None else MemoryStore()
        self.disk = disk
        self.capacity = capacity

    def run(
        self,
        graph: Graph,
        targets: list[str] | None = None,
        settings: RunSettings | None = None,
        on_event: EventSink | None = None,
        token: CancelToken | None = None,
    ) -> RunResult:
        settings = settings or RunSettings()
        emit = on_event or (lambda event: None)
        token = token or CancelToken()
        runnable, problems = effective_graph(graph, self.registry)
        speakers = subgraphs.representatives(graph)  # instance -> the inner node that speaks for it
        if runnable.origin:
            emit = subgraphs.speaking_for(emit, runnable.origin, speakers)
        index = Index(runnable)
        targets = [speakers.get(t, t) for t in targets or []]
        wanted = list(targets) if targets else default_targets(runnable, self.registry)
        missing = [t for t in wanted if t not in runnable.nodes]
        if missing:
            message = "no such node to run (is it muted or bypassed?)"
            problems.append(Problem(missing[0], None, message, ProblemCode.NO_SUCH_NODE))
        if not wanted:
            problems.append(
                Problem(
                    None,
                    None,
                    "nothing to run: the graph has no output node (Save Image / Preview Image); add one, or "
                    "run up to a chosen node",
                    ProblemCode.NO_OUTPUT,
                )
            )
        needed = ancestors(index, [t for t in wanted if t in runnable.nodes])
        problems = said_once(problems + validate(runnable, self.registry, settings.resolver, only=needed))
        if problems:
            return RunResult("invalid", problems=problems)
        order = [n for n in topological_order(runnable, index) or [] if n in needed]
        keys, _ = compute_keys(runnable, self.registry, order, settings.resolver, uuid.uuid4().hex, index)
        result = RunResult("ok", keys=keys)
        values, to_run = self._gather(runnable, index, wanted, keys)
        if self.capacity is not None:
            found = resources.estimate(runnable, self.registry, order, set(to_run), settings.resolver)
            too_large, warning = resources.check(found, settings.device, self.capacity)
            if too_large and not settings.allow_large:
                return RunResult("invalid", problems=owned(too_large, runnable.origin), keys=keys)
            if warning:
                emit({"event": EventKind.WARNING, "node": found.heaviest, "message": warning})
        for node_id in order:
            if node_id in values:
                result.cached.append(node_id)
                emit(
                    {
                        "event": EventKind.CACHED,
                        "node": node_id,
                        "source": values[node_id][1],
                        "key": keys[node_id],
                    }
                )
        values = {k: v for k, (v, _) in values.items()}
        failed: set[str] = set()
        for node_id in order:
            if node_id not in to_run:
                continue
            upstream_failed = {e.src for e in index.incoming[node_id].values()} & failed
            if upstream_failed:
                failed.add(node_id)
                emit({"event": EventKind.BLOCKED, "node": node_id, "by": sorted(upstream_failed)})
                continue
            if token.cancelled():
                emit({"event": EventKind.CANCELLED, "node": node_id})
                result.status = "cancelled"
                break
            outcome = self._run_node(runnable, index, node_id, keys, values, settings, emit, token)
            if outcome is _CANCELLED:
                result.status = "cancelled"
                break
            if isinstance(outcome, str):
                failed.add(node_id)
                result.errors[node_id] = outcome
                result.status = "error"
            else:
                result.ran.append(node_id)
        result.outputs = {t: values[t] for t in wanted if t in values}
        if speakers:
            result.outputs.update(subgraphs.instance_outputs(graph, values))
            result.keys.update({i: keys[s] for i, s in speakers.items() if s in keys})
        return result

    def _gather(self, graph: Graph, index: Index, wanted: list[str], keys: dict[str, str]):
        """Walk back from the targets: cached results stop the walk; the rest must run."""
        found: dict[str, tuple[dict[str, Any], str]] = {}
        to_run: set[str] = set()
        stack = list(wanted)
        while stack:
            node_id = stack.pop()
            if node_id in found or node_id in to_run:
                continue
            spec = self.registry.get(graph.nodes[node_id].type)
            if not (spec.output or spec.volatile):
                hit = self._lookup(keys[node_id], [port.name for port in spec.outputs])
                if hit is not None:
                    found[node_id] = hit
                    continue
            to_run.add(node_id)
            stack.extend(edge.src for edge in index.incoming[node_id].values())
        return found, to_run

    def _lookup(self, key: str, ports: list[str]) -> tuple[dict[str, Any], str] | None:
        """The stored outputs of `key`, if they hold every port; a disk entry that does not is removed."""
        value = self.memory.get(key)
        if value is not None:
            return value, "memory"
        if self.disk is not None:
            value = self.disk.get(key)
            if value is not None and all(port in value for port in ports):
                self.memory.put(key, value)
                return value, "disk"
            if value is not None:
                self.disk.discard(key)
        return None

    def _run_node(self, graph, index, node_id, keys, values, settings, emit, token) -> Any:
        """Run one node: its outputs (dict), its error message (str), or _CANCELLED."""
        key = keys[node_id]
        node = graph.nodes[node_id]
        spec = self.registry.get(node.type)
        incoming = index.incoming[node_id]
        kwargs, problems = param_values(spec, node_id, node.params, incoming, settings.resolver)
        if problems:  # validated already; a file that vanished since then lands here
            emit({"event": EventKind.ERROR, "node": node_id, "message": str(problems[0])})
            return str(problems[0])
        for port in spec.inputs:
            kwargs[port.name] = None
        for name, edge in incoming.items():
            kwargs[name] = values[edge.src][edge.src_port]
            param = spec.param(name)
            problem = param.check(kwargs[name]) if param is not None else None
            if problem:  # a linkable param fed by a link: its value is only known now
                message = str(Problem(node_id, name, f"{problem} (from {edge.src}.{edge.src_port})"))
                emit({"event": EventKind.ERROR, "node": node_id, "message": message})
                return message
            if param is not None:
                kwargs[name] = param.normalise(kwargs[name])
        inputs = {port.name: kwargs[port.name] for port in spec.inputs}
        ctx = Context(
            node_id=node_id,
            settings=settings,
            emit_event=emit,
            token=token,
            input_keys={name: f"{keys[e.src]}.{e.src_port}" for name, e in incoming.items()},
        )
        emit({"event": EventKind.STARTED, "node": node_id, "type": spec.type})
        start = time.perf_counter()
        try:
            outputs = spec.run(ctx, **kwargs)
            outputs = self._check_outputs(spec, outputs or {})
        except Cancelled:
            emit({"event": EventKind.CANCELLED, "node": node_id})
            return _CANCELLED
        except NodeError as error:
            emit(
                {
                    "event": EventKind.ERROR,
                    "node": node_id,
                    "message": str(error),
                    "inputs": summarise(inputs),
                }
            )
            return str(error)
        except Exception as error:  # a bug or a resource failure inside the node: keep the traceback
            message = f"{type(error).__name__}: {error}"
            emit(
                {
                    "event": EventKind.ERROR,
                    "node": node_id,
                    "message": message,
                    "traceback": traceback.format_exc(),
                    "inputs": summarise(inputs),
                }
            )
            return message
        duration = time.perf_counter() - start
        values[node_id] = outputs
        if not spec.output:
            self.memory.put(key, outputs)
            if self.disk is not None and spec.disk_cache and not spec.volatile:
                try:
                    self.disk.put(key, outputs)
                except OSError as error:  # a full or read-only cache folder must not fail the run
                    emit(
                        {
                            "event": EventKind.WARNING,
                            "node": node_id,
                            "message": f"disk cache not written: {error}",
                        }
                    )
        emit(
            {
                "event": EventKind.FINISHED,
                "node": node_id,
                "duration": round(duration, 6),
                "key": key,
                **ctx.reported,
            }
        )
        return outputs

    @staticmethod
    def _check_outputs(spec, outputs: Any) -> dict[str, Any]:
        if not isinstance(outputs, dict):
            raise TypeError(f"{spec.type} returned {type(outputs).__name__}, expected a dict of outputs")
        missing = [p.name for p in spec.outputs if p.name not in outputs]
        if missing:
            raise TypeError(f"{spec.type} returned no value for output(s) {', '.join(missing)}")
        return outputs


def summarise(values: dict[str, Any]) -> dict[str, str]:
    """One line per input for error reports: type, shape, dtype, model family (duck-typed, no torch)."""
    lines: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, (bool, int, float, str)):
            lines[name] = repr(value)[:60]
            continue
        inner = getattr(value, "samples", value)  # a Latent wraps its tensor
        parts = [type(value).__name__]
        shape = getattr(inner, "shape", None)
        if shape is not None:
            parts.append("shape " + "x".join(str(int(size)) for size in shape))
        if getattr(inner, "dtype", None) is not None:
            parts.append(str(inner.dtype).removeprefix("torch."))
        family = getattr(value, "family", None)
        if isinstance(family, str):
            parts.append(f"family {family}")
        lines[name] = ", ".join(parts)
    return lines
