"""Judge the tiny-shapes model by pixel heuristics: background colour, shape colour, shape kind, shape found.

Renders fresh prompt/seed pairs through Nodeloom's own txt2img graph (graphs/txt2img.json) when that graph and
its diffusion nodes exist, else through diffusers' StableDiffusionPipeline (`--backend pipeline`; the printout
says which). Prints per-attribute and all-correct accuracy at the default settings and how they change with
guidance (1, 3, 5, 7) and steps (5, 10, 20); can also write a contact sheet.

    python -m tools.eval_tiny_shapes --model assets/models/tiny-shapes --sheet docs/tiny-shapes-contact-sheet.png

Imports numpy, opencv and (lazily) torch/diffusers or the app engine; never Qt.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nodes.shapes import COLOURS
from tools.tiny_shapes_data import Sample, all_combinations

PALETTE = np.array(list(COLOURS.values()), np.float32)
NAMES = list(COLOURS)
MIN_AREA = 40  # pixels of 64x64: the smallest training shape covers ~150
ATTRIBUTES = ("found", "background", "colour", "shape")


@dataclass(frozen=True)
class Judgement:
    found: bool
    background: str
    colour: str
    shape: str
    fill: float


def nearest_colour(rgb: np.ndarray) -> str:
    return NAMES[int(np.argmin(((PALETTE - rgb) ** 2).sum(axis=1)))]


def judge(image: np.ndarray) -> Judgement:
    """Read a 64x64-ish uint8 RGB picture: border median = background; the largest blob that differs from it
    = the shape; its core's median = shape colour; blob area / bounding-box area = kind (triangle 0.5,
    circle 0.79, square 1.0)."""
    pixels = image.astype(np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3)])
    border = np.concatenate([border, pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    back = np.median(border, axis=0)
    distance = np.sqrt(((pixels - back) ** 2).sum(axis=2))
    rough = (distance > 60).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(rough, connectivity=8)
    if count < 2:
        return Judgement(False, nearest_colour(back), "", "", 0.0)
    blob = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[blob, cv2.CC_STAT_AREA] < MIN_AREA:
        return Judgement(False, nearest_colour(back), "", "", 0.0)
    region = labels == blob
    core = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    fore = np.median(pixels[core if core.sum() >= 8 else region], axis=0)
    to_fore = np.sqrt(((pixels - fore) ** 2).sum(axis=2))
    mask = (to_fore < distance).astype(np.uint8)  # nearer the shape colour than the background
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    blob = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if count > 1 else 0
    x, y, w, h, area = (int(v) for v in stats[blob])
    fill = area / max(1, w * h)
    shape = "square" if fill > 0.89 else "circle" if fill > 0.64 else "triangle"
    return Judgement(True, nearest_colour(back), nearest_colour(fore), shape, fill)


def eval_pairs(count: int, seed: int = 1000) -> list[tuple[Sample, int]]:
    """`count` prompt/seed pairs cycling through all 90 combinations in a shuffled order; seeds never used
    in training (training draws its noise from torch generators seeded by the step)."""
    combos = all_combinations()
    order = np.random.default_rng(seed).permutation(len(combos))
    return [(Sample(*combos[order[i % len(combos)]]), seed + i) for i in range(count)]


def correct(judgement: Judgement, sample: Sample) -> dict[str, bool]:
    return {
        "found": judgement.found,
        "background": judgement.background == sample.background,
        "colour": judgement.found and judgement.colour == sample.colour,
        "shape": judgement.found and judgement.shape == sample.shape,
    }


def score(images: list[np.ndarray], pairs: list[tuple[Sample, int]]) -> dict[str, float]:
    marks = [correct(judge(img), sample) for img, (sample, _) in zip(images, pairs, strict=True)]
    result = {a: float(np.mean([m[a] for m in marks])) for a in ATTRIBUTES}
    result["all"] = float(np.mean([all(m.values()) for m in marks]))
    return result


class PipelineRenderer:
    """diffusers StableDiffusionPipeline, loaded unchanged from the folder (its own scheduler)."""

    backend = "pipeline"

    def __init__(self, folder: Path, default_steps: int = 20, default_guidance: float = 5.0) -> None:
        import torch
        from diffusers import StableDiffusionPipeline

        self.torch = torch
        self.pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)
        self.defaults = {"steps": default_steps, "guidance": default_guidance}

    def render(self, pairs, steps=None, guidance=None, negative: str = "", batch: int = 30):
        steps = steps or self.defaults["steps"]
        guidance = self.defaults["guidance"] if guidance is None else guidance
        out = []
        for start in range(0, len(pairs), batch):
            chunk = pairs[start : start + batch]
            gens = [self.torch.Generator().manual_seed(seed) for _, seed in chunk]
            images = self.pipe(
                [s.caption for s, _ in chunk],
                negative_prompt=[negative] * len(chunk),
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=gens,
                output_type="np",
            ).images
            out += [np.round(img * 255).astype(np.uint8) for img in images]
        return out


class GraphRenderer:
    """Nodeloom's txt2img graph run by the engine; nodes are found by their specs (checkpoint path param,
    prompt text nodes, SEED/steps/guidance params, the LATENT -> IMAGE decoder as the target)."""

    backend = "graph"

    def __init__(self, graph_path: Path, model: str) -> None:
        from app.engine.context import RunSettings
        from app.engine.executor import Executor
        from app.files import FileResolver
        from app.graph import serialize
        from app.graph import types as T
        from app.registry import default_registry

        self.registry = default_registry()
        self.graph = serialize.load(str(graph_path), self.registry)
        self.executor = Executor(self.registry)
        self.settings = RunSettings(
            resolver=FileResolver(base_dirs=(Path.cwd(), graph_path.resolve().parent))
        )
        self.where: dict[str, tuple[str, str]] = {}
        for node_id, node in self.graph.nodes.items():
            spec = self.registry.get(node.type)
            outputs = {o.type for o in spec.outputs}
            inputs = {i.type for i in spec.inputs}
            for param in spec.params:
                if (param.path or "").startswith("model:checkpoints"):
                    self.graph.set_param(node_id, param.name, model)
                elif param.type == T.SEED:
                    self.where["seed"] = (node_id, param.name)
                elif param.name == "steps":
                    self.where["steps"] = (node_id, param.name)
                elif param.name in ("cfg", "guidance", "guidance_scale", "scale") and param.type == T.FLOAT:
                    self.where["guidance"] = (node_id, param.name)
                elif param.type == T.STRING and T.CONDITIONING in outputs and not param.choices:
                    self.where["negative" if "neg" in node_id else "prompt"] = (node_id, param.name)
            if T.LATENT in inputs and T.IMAGE in outputs:
                self.target = node_id
        missing = {"seed", "steps", "guidance", "prompt"} - set(self.where)
        if missing or not hasattr(self, "target"):
            raise SystemExit(
                f"{graph_path}: cannot find {sorted(missing) or 'a decoder'}; use --backend pipeline"
            )
        self.defaults = {k: self.graph.nodes[n].params[p] for k, (n, p) in self.where.items()}

    def render(self, pairs, steps=None, guidance=None, negative: str = "", batch: int = 0):
        values = {"steps": steps or self.defaults["steps"], "guidance": guidance}
        if guidance is None:  # not `guidance or default`: 0 is a value the caller may mean
            values["guidance"] = self.defaults["guidance"]
        if "negative" in self.where:
            values["negative"] = negative
        out = []
        for sample, seed in pairs:
            for key, value in {**values, "prompt": sample.caption, "seed": seed}.items():
                self.graph.set_param(*self.where[key], value)
            result = self.executor.run(self.graph, [self.target], self.settings)
            if result.status != "ok":
                raise SystemExit(f"graph run failed: {result.status} {result.errors or result.problems}")
            image = np.asarray(result.outputs[self.target]["image"])[0]
            out.append(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
        return out


def graph_ready(graph_path: Path) -> bool:
    if not graph_path.exists():
        return False
    from app.graph import serialize
    from app.registry import default_registry

    try:
        serialize.load(str(graph_path), default_registry())
    except Exception:  # noqa: BLE001 - any load failure means "not usable yet"
        return False
    return True


def contact_sheet(images: list[np.ndarray], pairs, path: Path, columns: int = 6, scale: int = 3) -> None:
    """Grid of samples, each upscaled with its prompt written under it; a green/red bar = judged right/wrong."""
    side = images[0].shape[0] * scale
    cell_h = side + 34
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * cell_h, columns * side, 3), 255, np.uint8)
    for i, (image, (sample, _)) in enumerate(zip(images, pairs, strict=True)):
        top, left = (i // columns) * cell_h, (i % columns) * side
        sheet[top : top + side, left : left + side] = cv2.resize(
            image, (side, side), interpolation=cv2.INTER_NEAREST
        )
        ok = all(correct(judge(image), sample).values())
        sheet[top + side : top + side + 3, left : left + side] = (40, 170, 60) if ok else (210, 40, 40)
        lines = (f"a {sample.colour} {sample.shape}", f"on a {sample.background} background")
        for j, text in enumerate(lines):
            org = (left + 4, top + side + 16 + 13 * j)
            cv2.putText(sheet, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def line(label: str, result: dict[str, float]) -> str:
    cells = "  ".join(f"{a} {result[a]:.3f}" for a in (*ATTRIBUTES, "all"))
    return f"{label:<24} {cells}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("assets/models/tiny-shapes"))
    parser.add_argument("--graph", type=Path, default=Path("graphs/txt2img.json"))
    parser.add_argument("--backend", choices=("auto", "graph", "pipeline"), default="auto")
    parser.add_argument(
        "--count", type=int, default=90, help="prompt/seed pairs (90 = every combination once)"
    )
    parser.add_argument("--seed", type=int, default=1000, help="first sampling seed")
    parser.add_argument("--sweep-count", type=int, default=60, help="pairs per guidance/steps sweep row")
    parser.add_argument("--no-sweep", action="store_true", help="only the default settings")
    parser.add_argument("--sheet", type=Path, default=None, help="write a 24-sample contact sheet here")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    use_graph = args.backend == "graph" or (args.backend == "auto" and graph_ready(args.graph))
    renderer = GraphRenderer(args.graph, args.model.name) if use_graph else PipelineRenderer(args.model)
    pairs = eval_pairs(args.count, args.seed)
    print(
        f"backend: {renderer.backend} ({args.graph if use_graph else args.model}), {len(pairs)} prompt/seed pairs"
    )
    print(f"defaults: {renderer.defaults}")
    started = time.time()
    images = renderer.render(pairs)
    results = {"backend": renderer.backend, "count": len(pairs), "default": score(images, pairs)}
    print(line("default", results["default"]), flush=True)
    if args.sheet is not None:
        contact_sheet(images[:24], pairs[:24], args.sheet)
    if not args.no_sweep:
        some = pairs[: args.sweep_count]
        settings = [{"guidance": g} for g in (1.0, 3.0, 5.0, 7.0)] + [{"steps": n} for n in (5, 10, 20)]
        for setting in settings:
            label = " ".join(f"{k} {v:g}" for k, v in setting.items()) + f" (n={len(some)})"
            results[label] = score(renderer.render(some, **setting), some)
            print(line(label, results[label]), flush=True)
    print(f"evaluated in {time.time() - started:.0f}s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
