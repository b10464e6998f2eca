"""Timing shared by the sampler benches: loops run in alternating rounds on one device, round 0 a warm-up.

`alternate(loops, rounds, device)` runs every loop once per round, in order, so slow drift (clocks, other
load) hits them alike; it returns each loop's wall times (warm-up dropped), its peak CUDA memory (GiB; NaN
on other devices) and its last result. Imports torch inside.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def measure(function: Callable[[], Any], device: Any) -> tuple[float, float, Any]:
    """(seconds, peak GiB, result) of one call, synchronised on CUDA."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = function()
    if cuda:
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return time.perf_counter() - start, peak, result


def alternate(
    loops: dict[str, Callable[[], Any]], rounds: int, device: Any
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """Each loop's times over `rounds` counted rounds, peak memory and last result (see the docstring)."""
    times: dict[str, list[float]] = {name: [] for name in loops}
    peaks: dict[str, float] = {}
    outputs: dict[str, Any] = {}
    for round_index in range(rounds + 1):  # round 0 warms up (kernels, allocator) and is not counted
        for name, loop in loops.items():
            seconds, peak, outputs[name] = measure(loop, device)
            if round_index:
                times[name].append(seconds)
                peaks[name] = max(peaks.get(name, 0.0), peak)
    return times, peaks, outputs
