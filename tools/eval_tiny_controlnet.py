"""Does the tiny-shapes ControlNet put the shape where the control says? Mean IoU over held-out controls.

For each of --count held-out samples (seeds disjoint from training) a target image of a shape is drawn
(nodes/shapes.py draw()), written to a PNG and rendered through Nodeloom's graphs/controlnet_canny.json on the
tiny-shapes model with the sample's caption: Load Image -> Canny -> Apply ControlNet -> Sampler -> Decode.
The generated shape's mask (pixels nearer the caption's shape colour than its background colour) is compared
with the control shape's mask. The same renders with strength 0 (exactly no ControlNet, see
tests/nodes/test_controlnet.py) give the chance level: the prompt alone does not say where the shape goes.

    python -m tools.eval_tiny_controlnet [--controlnet assets/models/controlnet/tiny-shapes-canny] [--count 30]

Imports numpy/torch through the engine; never Qt.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from app import images
from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.graph import serialize
from app.registry import default_registry
from nodes.shapes import COLOURS, draw
from tools.tiny_shapes_data import SIZE_RANGE, all_combinations, caption

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "graphs" / "controlnet_canny.json"
CONTROLNET = ROOT / "assets" / "models" / "controlnet" / "tiny-shapes-canny"
SIZE = 64


def held_out(count: int, seed: int = 10_000) -> list[dict]:
    """Samples (caption colours, shape, centre, half-extent) from seeds training never draws."""
    combos = all_combinations()
    samples = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        colour, shape, background = combos[int(rng.integers(len(combos)))]
        half = float(rng.uniform(*SIZE_RANGE))
        x, y = (float(v) for v in rng.uniform(half + 0.02, 1.0 - half - 0.02, 2))
        samples.append(
            {"colour": colour, "shape": shape, "background": background, "x": x, "y": y, "half": half}
        )
    return samples


def control_mask(s: dict) -> np.ndarray:
    return draw(s["shape"], (255, 255, 255), (0, 0, 0), s["x"], s["y"], s["half"], SIZE, SIZE)[..., 0] > 127


def generated_mask(image: np.ndarray, s: dict) -> np.ndarray:
    """Pixels of a generated RGB 0..1 image nearer the shape colour than the background colour."""
    pixels = image * 255.0
    to_shape = np.linalg.norm(pixels - np.asarray(COLOURS[s["colour"]]), axis=-1)
    to_background = np.linalg.norm(pixels - np.asarray(COLOURS[s["background"]]), axis=-1)
    return to_shape < to_background


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def evaluate(controlnet: Path, count: int, steps: int = 20, guidance: float = 5.0) -> dict[str, float]:
    """Mean IoU with the ControlNet (strength 1) and without it (strength 0)."""
    roots = [
        str(controlnet.resolve().parent),
        str(ROOT / "assets" / "models"),
        os.environ.get("NODELOOM_MODEL_ROOTS", ""),
    ]
    os.environ["NODELOOM_MODEL_ROOTS"] = os.pathsep.join(r for r in roots if r)  # the ControlNet by name
    registry = default_registry()
    executor = Executor(registry)
    scores: dict[str, list[float]] = {"controlnet": [], "without": []}
    with tempfile.TemporaryDirectory() as folder:
        for i, s in enumerate(held_out(count)):
            target = draw(
                s["shape"], COLOURS[s["colour"]], COLOURS[s["background"]], s["x"], s["y"], s["half"]
            )
            path = Path(folder) / f"control_{i}.png"
            path.write_bytes(images.encode_png(images.from_uint8(target)))
            for name, strength in (("controlnet", 1.0), ("without", 0.0)):
                g = serialize.load(GRAPH, registry)
                params = {
                    ("model", "checkpoint"): "tiny-shapes",
                    ("controlnet", "controlnet"): controlnet.name,
                    ("control_image", "path"): str(path),
                    ("canny", "width"): SIZE,
                    ("canny", "height"): SIZE,
                    ("latent", "width"): SIZE,
                    ("latent", "height"): SIZE,
                    ("prompt", "text"): caption(s["colour"], s["shape"], s["background"]),
                    ("schedule", "steps"): steps,
                    ("guidance", "scale"): guidance,
                    ("sampler", "seed"): i,
                    ("apply", "strength"): strength,
                }
                for (node_id, param), value in params.items():
                    g.set_param(node_id, param, value)
                settings = RunSettings(device="cpu", output_dir=Path(folder), graph_json=serialize.dumps(g))
                result = executor.run(g, ["decode"], settings)
                if result.status != "ok":
                    raise SystemExit(f"render failed: {result.errors or [str(p) for p in result.problems]}")
                image = result.outputs["decode"]["image"][0]
                scores[name].append(iou(generated_mask(image, s), control_mask(s)))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controlnet", type=Path, default=CONTROLNET)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="keep 1 on a shared machine")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = evaluate(args.controlnet, args.count, args.steps, args.guidance)
    print(
        f"mean IoU over {args.count} held-out controls: with ControlNet {result['controlnet']:.3f}, "
        f"without (chance) {result['without']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
