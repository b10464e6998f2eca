"""What a run will take, estimated before it starts from the graph alone: memory against what the device has
free (refused beyond it, unless the run allows large runs), and time (a warning when it is long).

Node types that matter declare a `measure` hook (app/graph/spec.MeasureFunction): given their params (file
paths resolved) and the facts of their linked inputs, it returns the facts of their outputs. Facts are plain
numbers that flow downstream, by convention `pixels` (an image or latent stream's pixels, batch included),
`params` (a denoiser's parameter count), `dit` (1 for a transformer on 2x2 patches), `steps`, `branches`
(model passes per step: 2 with CFG), plus three that stay with the node: `weights` (parameters it holds for
the run), `peak` (numbers it needs at once beside them) and `flops` (its work). A node without a hook passes
its inputs' facts on. Only nodes that will run count (cached ones cost nothing), so a re-run is cheap.

The sums are rough by design (within a factor of two of what was measured: SD1.5's UNet at 512² about
0.8 TFLOP a pass, an untiled SD VAE decode about 2 GB per megapixel in fp32); they are for refusing an
8192² or a batch-64 run up front, not for accounting. Memory is weights + the largest peak, in the run's
dtype (4 bytes on a CPU, 2 on CUDA). Pure Python: what the device has comes from a `capacity` function the
Executor is given (app/runtime/device.capacity), asked only when the estimate is large enough to matter.
Never import torch or Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.engine.plan import Index, Problem, effective_graph, param_values, topological_order
from app.files import FileResolver
from app.graph.codes import ProblemCode
from app.graph.model import Graph

OWN = ("weights", "peak", "flops")  # facts that stay with the node that reports them
SMALL_BYTES = 2 << 30  # below this the device is not asked (every machine has it)
SMALL_SECONDS = 60.0
WARN_SECONDS = 120.0  # longer runs get a warning with the estimate
HEADROOM = 0.9  # share of the free memory a run may plan to use
EFFICIENCY = 0.5  # share of the measured matrix-product rate that convolutions and attention reach
GB = 1 << 30


@dataclass(frozen=True)
class Estimate:
    weights: float  # parameters loaded for the run
    peak: float  # numbers held at once by the heaviest node
    heaviest: str | None  # that node
    flops: float

    def bytes(self, width: int) -> int:
        return int((self.weights + self.peak) * width)


@dataclass(frozen=True)
class Capacity:
    label: str  # "cpu (2 threads)", "CUDA NVIDIA H200"
    free: int  # bytes
    rate: float  # FLOP/s this device reaches on the work above
    width: int  # bytes per number in a run there


def estimate(
    graph: Graph, registry: Any, order: list[str], running: set[str], resolver: FileResolver
) -> Estimate:
    """The facts of every node in `order` (topological), summed over the nodes in `running`."""
    index = Index(graph)
    facts: dict[str, dict[str, float]] = {}
    weights = flops = peak = 0.0
    heaviest = None
    for node_id in order:
        node, spec = graph.nodes[node_id], registry.get(graph.nodes[node_id].type)
        incoming = index.incoming[node_id]
        inputs = {port: facts.get(edge.src, {}) for port, edge in incoming.items()}
        out = _passed_on(inputs)
        if spec is not None and spec.measure is not None:
            try:
                values, problems = param_values(spec, node_id, node.params, incoming, resolver)
                out = dict(spec.measure(values, inputs)) if not problems else out
            except Exception:  # an estimate must never stop a run; the node's own check reports bad files
                out = _passed_on(inputs)
        if node_id in running:
            weights += out.get("weights", 0.0)
            flops += out.get("flops", 0.0)
            if out.get("peak", 0.0) > peak:
                peak, heaviest = out["peak"], node_id
        facts[node_id] = {k: v for k, v in out.items() if k not in OWN}
    return Estimate(weights, peak, heaviest, flops)


def estimate_graph(graph: Graph, registry: Any, resolver: FileResolver) -> Estimate:
    """The whole graph's estimate, as if nothing were cached (what `nodeloom validate` reports)."""
    runnable, _ = effective_graph(graph, registry)
    order = topological_order(runnable) or list(runnable.nodes)
    return estimate(runnable, registry, order, set(order), resolver)


def _passed_on(inputs: dict[str, dict[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for found in inputs.values():
        for key, value in found.items():
            merged[key] = max(merged.get(key, 0.0), value)
    return merged


def check(found: Estimate, device: str, capacity: Any) -> tuple[list[Problem], str | None]:
    """(problems: the run needs more memory than the device has free; a warning when it will take long).
    `capacity(device)` (app/runtime/device.capacity, handed to the Executor) is asked only for a large
    estimate."""
    rough = found.bytes(4)
    if rough < SMALL_BYTES and found.flops < SMALL_SECONDS * 1e9:
        return [], None
    have = capacity(device)
    needed = found.bytes(have.width)
    problems = []
    if needed > have.free * HEADROOM:
        problems.append(
            Problem(
                found.heaviest,
                None,
                f"this run needs about {needed / GB:.1f} GB ({found.weights * have.width / GB:.1f} GB of weights "
                f"+ {found.peak * have.width / GB:.1f} GB here at once) but {have.label} has {have.free / GB:.1f} "
                "GB free: make the picture or the batch smaller (or tile the VAE decode), or allow large runs "
                "(nodeloom run --allow-large; the editor asks)",
                ProblemCode.TOO_LARGE,
            )
        )
    seconds = found.flops / have.rate
    warning = None
    if seconds > WARN_SECONDS:
        warning = (
            f"this run will take about {_duration(seconds)} on {have.label} (estimated before it starts)"
        )
    return problems, warning


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:02.0f} min"
