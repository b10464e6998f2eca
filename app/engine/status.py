"""Node states for the editor's badges, computed from cache keys without running anything.

States: `cached` (its result is known to exist), `stale` (will run; `reason` says why, e.g. which
param changed), `error` (invalid, or failed last time with the same key), `blocked` (an upstream node
is in error). `running` is not computed here: the editor learns it from `started` events.

The tracker learns what exists from the executor's events (`cached`/`finished` carry the node's key),
so it works when the results live in a worker process. Never import torch or Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.engine.events import EventKind
from app.engine.keys import KeyParts, compute_keys, explain
from app.engine.plan import Index, Problem, effective_graph, said_once, topological_order, validate
from app.engine.store import DiskStore
from app.files import FileResolver
from app.graph import subgraphs
from app.graph.model import Graph
from app.registry import Registry


@dataclass(frozen=True)
class NodeState:
    state: str
    reason: str = ""


class StatusTracker:
    """Keeps what the runs reported; `states(graph)` says what each node would do now."""

    def __init__(
        self, registry: Registry, resolver: FileResolver | None = None, disk: DiskStore | None = None
    ) -> None:
        self.registry = registry
        self.resolver = resolver or FileResolver()
        self.disk = disk
        self.known: set[str] = set()
        self.failed: dict[str, tuple[str, str]] = {}  # node -> (key, message) of its last failure
        self.last_parts: dict[str, KeyParts] = {}  # node -> parts of the key it last had a result for
        self.problems: list[Problem] = []  # every validation problem `states` found, for the Errors dock
        self.keys_now: dict[str, str] = {}  # each runnable node's key, as `states` last computed them
        self._submitted: dict[str, KeyParts] = {}

    def _plan(self, graph: Graph):
        """The graph's index and order, keys (and parts) of the nodes that can run, error/blocked states,
        and every validation problem (bypass/mute ones included)."""
        runnable, problems = effective_graph(graph, self.registry)
        index = Index(runnable)
        problems = said_once(problems + validate(runnable, self.registry, self.resolver))
        states: dict[str, NodeState] = {}
        for problem in problems:
            if problem.node is not None and problem.node not in states:
                states[problem.node] = NodeState("error", str(problem))
        order = topological_order(runnable, index) or []
        for node_id in order:
            upstream = [e.src for e in index.incoming[node_id].values() if e.src in states]
            if upstream and node_id not in states:
                states[node_id] = NodeState("blocked", f"waits for '{upstream[0]}', which has a problem")
        good = [n for n in order if n not in states and runnable.origin.get(n) not in states]
        keys, parts = compute_keys(runnable, self.registry, good, self.resolver, index=index)
        for instance, inner in subgraphs.representatives(graph).items():  # an instance has its speaker's key
            if inner in keys:
                keys[instance], parts[instance] = keys[inner], parts[inner]
        return index, good, keys, parts, states, problems

    def submitted(self, graph: Graph) -> None:
        """Call when a run of `graph` starts, so finished nodes can be tied to their key parts."""
        self._submitted = self._plan(graph)[3]

    def keys(self, graph: Graph) -> dict[str, str]:
        """The cache key each runnable node of `graph` has now."""
        return self._plan(graph)[2]

    def submitted_key(self, node_id: str) -> str | None:
        """The key `node_id` had in the graph of the run that started last."""
        parts = self._submitted.get(node_id)
        return parts.digest() if parts is not None else None

    def observe(self, event: dict[str, Any]) -> None:
        kind, node_id, key = event.get("event"), event.get("node"), event.get("key")
        if kind in (EventKind.CACHED, EventKind.FINISHED) and key:
            self.known.add(key)
            self.failed.pop(node_id, None)
            if node_id in self._submitted:
                self.last_parts[node_id] = self._submitted[node_id]
        elif kind == EventKind.ERROR and node_id in self._submitted:
            self.failed[node_id] = (self._submitted[node_id].digest(), event.get("message", ""))

    def states(self, graph: Graph) -> dict[str, NodeState]:
        """Each node's state now; also keeps the validation problems found on the way in `problems` and
        the nodes' keys in `keys_now`."""
        index, order, keys, parts, states, self.problems = self._plan(graph)
        self.keys_now = keys
        for node_id in order:
            key = keys[node_id]
            upstream = {name: e.src for name, e in index.incoming[node_id].items()}
            bad_parent = next(
                (src for src in upstream.values() if states[src].state in ("error", "blocked")), None
            )
            if bad_parent is not None:
                states[node_id] = NodeState("blocked", f"waits for '{bad_parent}', which failed")
            elif self.failed.get(node_id, ("", ""))[0] == key:
                states[node_id] = NodeState("error", self.failed[node_id][1])
            elif key in self.known or (self.disk is not None and self.disk.has(key)):
                states[node_id] = NodeState("cached")
            else:
                states[node_id] = NodeState(
                    "stale", explain(self.last_parts.get(node_id), parts[node_id], upstream)
                )
        for instance, inner in subgraphs.representatives(graph).items():
            states.setdefault(instance, states.get(inner, NodeState("stale", "")))
        states = {node_id: state for node_id, state in states.items() if node_id in graph.nodes}
        for node in graph:
            if node.mode != "normal":
                states[node.id] = NodeState(
                    node.mode,
                    "muted: does not run" if node.mode == "mute" else "bypassed: passes its input on",
                )
        return states
