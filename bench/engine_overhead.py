"""Executor overhead on no-op nodes: planning + keying, running, and re-running after one change.

Prints, for a 1 000-node chain and a 1 000-node random DAG, the time to validate + order + key the
graph, the executor's own cost per node for a full run of no-op nodes, and the time to re-run after
one param change at the far end of the chain (which re-runs one node plus the sink).
Target: planning + keying of 1 000 nodes under 50 ms.  Usage: python bench/engine_overhead.py [N]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.executor import Executor  # noqa: E402
from app.engine.keys import compute_keys  # noqa: E402
from app.engine.plan import Index, effective_graph, topological_order, validate  # noqa: E402
from app.files import FileResolver  # noqa: E402
from app.graph import types as T  # noqa: E402
from app.graph.model import Edge, Graph, Node  # noqa: E402
from app.graph.spec import Input, Output, Param, node  # noqa: E402
from app.registry import Registry  # noqa: E402


@node(
    "bench.noop",
    title="No-op",
    category="bench",
    inputs=[Input("a", T.FLOAT, optional=True), Input("b", T.FLOAT, optional=True)],
    outputs=[Output("value", T.FLOAT)],
    params=[Param("k", T.FLOAT, 0.0), Param("label", T.STRING, "x")],
)
def noop(ctx, a, b, k, label):
    return {"value": k}


@node("bench.sink", title="Sink", category="bench", output=True, inputs=[Input("value", T.FLOAT)])
def sink(ctx, value):
    return {}


REGISTRY = Registry([noop.spec, sink.spec])


def chain_graph(n: int) -> Graph:
    graph = Graph()
    for i in range(n - 1):
        graph.add_node(Node(f"n{i}", "bench.noop", params={"k": float(i)}))
        if i:
            graph.edges.append(Edge(f"n{i - 1}", "value", f"n{i}", "a"))
    graph.add_node(Node("sink", "bench.sink"))
    graph.edges.append(Edge(f"n{n - 2}", "value", "sink", "value"))
    return graph


def random_dag(n: int, seed: int = 0) -> Graph:
    rng = random.Random(seed)
    graph = Graph()
    for i in range(n - 1):
        graph.add_node(Node(f"n{i}", "bench.noop", params={"k": float(i)}))
        for port in ("a", "b"):
            if i and rng.random() < 0.8:
                graph.edges.append(Edge(f"n{rng.randrange(max(0, i - 50), i)}", "value", f"n{i}", port))
    graph.add_node(Node("sink", "bench.sink"))
    graph.edges.append(Edge(f"n{n - 2}", "value", "sink", "value"))
    return graph


def best_of(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def plan_and_key(graph: Graph, resolver: FileResolver) -> None:
    runnable, _ = effective_graph(graph, REGISTRY)
    index = Index(runnable)
    assert not validate(runnable, REGISTRY, resolver)
    order = topological_order(runnable, index)
    compute_keys(runnable, REGISTRY, order, resolver, uuid.uuid4().hex, index)


def measure(name: str, graph: Graph, n: int) -> None:
    resolver = FileResolver(base_dirs=(Path.cwd(),), model_roots=())
    planning = best_of(lambda: plan_and_key(graph, resolver))
    runs = []
    for _ in range(5):
        executor = Executor(REGISTRY)
        start = time.perf_counter()
        result = executor.run(graph)
        runs.append(time.perf_counter() - start)
        assert result.status == "ok"
    full, ran = min(runs), len(result.ran)
    executor = Executor(REGISTRY)
    executor.run(graph)
    last = [nid for nid in graph.nodes if nid != "sink"][-1]
    rerun = []
    for step in range(5):
        graph.set_param(last, "k", 1e6 + step)
        start = time.perf_counter()
        result = executor.run(graph)
        rerun.append(time.perf_counter() - start)
        assert result.ran == [last, "sink"], result.ran
    print(
        f"{name:<16} plan+key {planning * 1e3:7.2f} ms ({planning / n * 1e6:6.1f} us/node)   "
        f"full run of the {ran} needed {full * 1e3:7.2f} ms (running alone {(full - planning) / ran * 1e6:5.1f} us/node)   "
        f"re-run after 1 change {statistics.median(rerun) * 1e3:7.2f} ms "
        f"({statistics.median(rerun) / full:5.2f}x of a full run)"
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f"engine overhead, {n} no-op nodes, memory store only (best of several runs)")
    measure("chain", chain_graph(n), n)
    measure("random DAG", random_dag(n), n)


if __name__ == "__main__":
    main()
