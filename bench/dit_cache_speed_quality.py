"""DiT Step Cache strategies, speed beside quality, in one run: delta_dit, ras, adaptive, taylorseer, first_block
and magcache against the uncached loop.

  (a) tiny-shapes-sd3 (the embedded SD3-architecture model, assets/models/tiny-shapes-sd3) through
      graphs/sd3_txt2img_cache.json with `cache.strategy` switched: for each strategy the Sampler's median
      time per picture over fresh prompt/seed pairs, its speedup over `none`, the judge's all-correct
      prompt accuracy (tools/eval_tiny_shapes.judge) and PSNR / SSIM of the pictures against the uncached
      ones, and how many pairs each strategy lost and won against uncached (the same prompt and seed).
      Adaptive plans are calibrated once per setting (the Step Cache node's probe run) and reused.
      `--family flux`: tiny-shapes-flux through graphs/flux_txt2img_cache.json instead.
  (b) a random-weight transformer of SD3.5-medium's width (the shipped skeleton; `--layers` keeps the
      first N of its 24 blocks on a CPU) through our sampling loop (bench/flow_sampler.py's harness): time
      per strategy, speedup, skipped blocks. Weight values do not change the speed.

The papers' claims to compare with: Δ-DiT "1.6x speedup on the 20-step generation", RAS "up to 2.36x",
block-wise adaptive caching "up to 3x"; the goal is their speedups with prompt accuracy within one point
of uncached. Tests never assert on wall time; this prints numbers to read.

    python bench/dit_cache_speed_quality.py --pairs 30                       # (a) and (b) on a CPU
    python bench/dit_cache_speed_quality.py --only a --strategies none,delta_dit \
        --variant delta_dit_half=delta_dit:blocks=2                         # other settings beside them
    python bench/dit_cache_speed_quality.py --only a --family flux --pairs 90
    python bench/dit_cache_speed_quality.py --only b --device cuda --dtype bfloat16 --size 1024 --steps 28 --layers 24
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench import flow_sampler  # noqa: E402
from bench.cache_speed_quality import psnr, ssim  # noqa: E402

STRATEGIES = {  # the cache node's params per strategy (the papers' settings, scaled to the step count)
    "none": {},
    "delta_dit": {"interval": 2, "blocks": 0},  # boundary: half the steps, set per run
    "ras": {"ratio": 0.25, "start": 4, "end": 0, "interval": 5},
    "adaptive": {"interval": 2, "plan": ""},
    "taylorseer": {"interval": 3, "start": 2, "order": 1},
    "first_block": {"threshold": 0.05},
    "magcache": {"threshold": 0.06, "interval": 3},
}


SIMPLE = ("delta_dit", "ras", "taylorseer", "first_block", "adaptive")  # strategies a variant may set


def settings_table(args) -> dict[str, tuple[str, dict]]:
    """label -> (strategy, params): the strategies asked for (--strategies; "none" always), then each
    --variant LABEL=STRATEGY:key=value,... (other settings of a strategy, e.g. Δ-DiT over more blocks)."""
    chosen = {
        n: (n, p) for n, p in STRATEGIES.items() if n == "none" or not args.strategies or n in args.strategies
    }
    for text in args.variant:
        label, _, rest = text.partition("=")
        strategy, _, assignments = rest.partition(":")
        if strategy not in SIMPLE:
            raise SystemExit(f"--variant {text!r}: the strategy must be one of {', '.join(SIMPLE)}")
        params = dict(STRATEGIES[strategy])
        for item in filter(None, assignments.split(",")):
            key, _, value = item.partition("=")
            params[key] = float(value) if "." in value else int(value)
        chosen[label] = (strategy, params)
    return chosen


def quality(args) -> None:
    from app.engine.context import RunSettings
    from app.engine.executor import Executor
    from app.graph import serialize
    from app.registry import default_registry
    from tools.eval_tiny_shapes import correct, eval_pairs, judge

    registry = default_registry()
    graph = serialize.load(str(ROOT / "graphs" / f"{args.family}_txt2img_cache.json"), registry)
    graph.set_param("model", "checkpoint", args.model or f"tiny-shapes-{args.family}")
    graph.set_param("schedule", "steps", args.steps)
    executor, pairs = Executor(registry), eval_pairs(args.pairs, seed=7000)
    table = settings_table(args)
    found = {name: {"times": [], "pictures": [], "marks": [], "skipped": []} for name in table}
    plans: dict[str, str] = {}  # adaptive's and magcache's calibration, made once and reused
    for sample, seed in pairs:  # strategies take turns on each pair: they share the machine's load
        graph.set_param("prompt", "text", sample.caption)
        graph.set_param("sampler", "seed", seed)
        for label, (strategy, params) in table.items():
            settings = {"strategy": strategy, "boundary": args.steps // 2, **params, "steps": args.steps}
            for name, value in {
                **settings,
                **({"plan": plans[label]} if label in plans else {}),
            }.items():
                graph.set_param("cache", name, value)
            events: list[dict] = []
            result = executor.run(graph, ["decode"], RunSettings(device="cpu"), on_event=events.append)
            if result.status != "ok":
                raise SystemExit(f"{strategy}: {result.errors or result.problems}")
            done = next(e for e in events if e.get("event") == "finished" and e.get("node") == "sampler")
            row = found[label]
            row["times"].append(done["duration"])
            row["skipped"].append(
                done.get("skipped_blocks", 0) / max(1, done.get("cache_total_blocks", 0) or 1)
            )
            picture = np.clip(np.asarray(result.outputs["decode"]["image"])[0], 0, 1)
            row["pictures"].append(picture)
            row["marks"].append(
                all(correct(judge(np.round(picture * 255).astype(np.uint8)), sample).values())
            )
            cache = next((e for e in events if e.get("event") == "finished" and e.get("node") == "cache"), {})
            if strategy == "adaptive" and "plan" in cache:
                plans[label] = cache["plan"]
    reference, right = found["none"]["pictures"], found["none"]["marks"]
    rows = {}
    for strategy, row in found.items():
        pictures = row["pictures"]
        rows[strategy] = (
            statistics.median(row["times"][1:] or row["times"]),  # the first call warms the strategy up
            float(np.mean(row["marks"])),
            float(np.mean([psnr(p, r, 1.0) for p, r in zip(pictures, reference, strict=True)])),
            float(np.mean([ssim(p, r) for p, r in zip(pictures, reference, strict=True)])),
            float(np.mean(row["skipped"])),
            sum(a and not b for a, b in zip(right, row["marks"], strict=True)),
            sum(b and not a for a, b in zip(right, row["marks"], strict=True)),
        )
    base = rows["none"][0]
    print(
        f"(a) {graph.nodes['model'].params['checkpoint']}, 64x64, {args.steps} steps euler, "
        f"{'CFG' if args.family == 'sd3' else 'distilled guidance'} {graph.nodes['guidance'].params['scale']:g}, "
        f"{args.pairs} fresh prompt/seed pairs, CPU"
    )
    print(
        f"    {'strategy':<12} {'sampler':>9} {'speedup':>8} {'all-correct':>12} {'PSNR':>8} {'SSIM':>6} {'skipped':>8}"
        "  pairs lost/won vs uncached"
    )
    for strategy, (median, accuracy, p, s, share, lost, won) in rows.items():
        shown = f"{p:6.1f}dB" if np.isfinite(p) else "  exact"
        print(
            f"    {strategy:<12} {median:8.3f}s {base / median:7.2f}x {accuracy:11.1%} {shown:>8} {s:6.3f} {share:7.0%}"
            f"  -{lost}/+{won}"
        )


def speed(args) -> None:
    import torch

    from app.runtime.families import by_name
    from app.runtime.schedulers import make_scheduler, timesteps
    from app.runtime.step_cache.adaptive import calibrate_blocks, magnitude_ratios
    from app.runtime.values import Schedule

    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    transformer, scheduler_config, _ = flow_sampler.build("sd3", False, device, dtype, layers=args.layers)
    texts = flow_sampler.embeddings(transformer, device, dtype)
    family = by_name("sd3")
    latents = torch.randn(1, 16, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(3))
    schedule = Schedule("euler", args.steps)
    scheduler = make_scheduler(schedule, scheduler_config, flow=True)
    steps, _ = timesteps(scheduler, schedule, device)

    def adaptive(interval: int) -> dict:
        """The adaptive strategy with a plan calibrated for ceil(steps / interval) refreshes per block."""
        plan = calibrate_blocks(
            transformer, family.forward, timesteps(scheduler, schedule, device)[0], latents.to(device, dtype),
            step=lambda v, t, x: scheduler.step(v, t, x, return_dict=False)[0], budget=-(-args.steps // interval),
            encoder_hidden_states=texts[0], pooled_projections=texts[1],
        )  # fmt: skip
        return {
            "strategy": "adaptive",
            "plan": plan.plan,
            "plan_steps": plan.plan_steps,
            "blocks": plan.blocks,
        }

    steps, _ = timesteps(scheduler, schedule, device)
    ratios = magnitude_ratios(
        transformer, family.forward, steps, latents.to(device, dtype),
        step=lambda v, t, x: scheduler.step(v, t, x, return_dict=False)[0],
        encoder_hidden_states=texts[0], pooled_projections=texts[1],
    )  # fmt: skip
    caches = {name: {"strategy": name, **params} for name, params in STRATEGIES.items() if name != "none"}
    caches["magcache"]["ratios"] = ratios
    caches["delta_dit"]["boundary"] = args.steps // 2
    caches["adaptive"] = adaptive(STRATEGIES["adaptive"]["interval"])
    for label, (strategy, params) in settings_table(args).items():
        if label not in STRATEGIES:
            caches[label] = (
                adaptive(params["interval"])
                if strategy == "adaptive"
                else {"strategy": strategy, "boundary": args.steps // 2, **params}
            )
    times: dict[str, list[float]] = {"none": []}
    reports = {}
    flow_sampler.run_ours("sd3", transformer, scheduler_config, texts, args.size, args.steps, None)  # warm-up
    for _ in range(args.rounds):
        for name in ["none", *caches]:
            start = time.perf_counter()
            _, reported = flow_sampler.run_ours(
                "sd3", transformer, scheduler_config, texts, args.size, args.steps, caches.get(name)
            )
            times.setdefault(name, []).append(time.perf_counter() - start)
            reports[name] = reported
    params = sum(p.numel() for p in transformer.parameters()) / 1e9
    print(f"(b) SD3.5-medium-width transformer, {len(transformer.transformer_blocks)} of 24 blocks ({params:.2f} B params), "
          f"random weights, {args.size}x{args.size}, {args.steps} steps, CFG 5, {args.dtype} on {device}, {args.rounds} rounds")  # fmt: skip
    base = statistics.median(times["none"])
    for name, values in times.items():
        median = statistics.median(values)
        r = reports[name]
        skipped = (
            f"skipped {r.get('skipped_blocks', 0)}/{r.get('cache_total_blocks', 0)} blocks"
            if name != "none"
            else ""
        )
        print(f"    {name:<12} {median:8.3f}s {base / median:6.2f}x  {skipped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("a", "b"))
    parser.add_argument("--family", choices=("sd3", "flux"), default="sd3", help="(a): the graph and model")
    parser.add_argument("--model", default=None, help="(a): default tiny-shapes-FAMILY")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4, help="(b): the first N of SD3.5-medium's 24 blocks")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strategies", type=lambda t: t.split(","), default=[], help="(a): only these")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="LABEL=STRATEGY:key=value,...",
        help="another setting of a strategy, e.g. delta_dit_18=delta_dit:blocks=18 or adaptive_3=adaptive:interval=3",
    )  # fmt: skip
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.only != "b":
        quality(args)
    if args.only != "a":
        speed(args)


if __name__ == "__main__":
    main()
