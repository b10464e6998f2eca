"""Judge editing on the embedded tiny-shapes model: prompt edits through inversion (graphs/edit_inversion.json)
and inpainting a new shape into a masked region (graphs/inpaint.json), on fresh drawn pictures.

- round trip: invert with the picture's caption, resample with the same caption; relative error of the
  resampled latent against the encoded one (|z' - z| / |z|), per method.
- edits: change the shape's colour (to one that is neither its colour nor the background) or its kind;
  success = the judge (tools/eval_tiny_shapes.judge) reads the new attribute AND the background and the
  untouched attribute as they were.
- inpaint: a plain background picture, a random square mask, the prompt asks for a shape inside it; success
  = the judge reads the asked colour, kind and background and the shape's centre lies in the mask; mean
  change outside the mask in 0..255 units.

    python -m tools.eval_editing --count 60 [--method edit_friendly] [--steps 20] [--sheet docs/editing.png]

Imports numpy, opencv and the app engine; never Qt.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from nodes.shapes import COLOURS, SHAPES, draw
from tools.eval_tiny_shapes import judge
from tools.tiny_shapes_data import Sample, random_sample

ROOT = Path(__file__).resolve().parents[1]


class Runner:
    """One shipped graph run by the engine on files in a scratch folder."""

    def __init__(self, name: str, folder: Path) -> None:
        from app.engine.context import RunSettings
        from app.engine.executor import Executor
        from app.files import FileResolver
        from app.graph import serialize
        from app.registry import default_registry

        registry = default_registry()
        self.graph = serialize.load(str(ROOT / "graphs" / f"{name}.json"), registry)
        self.executor = Executor(registry)
        self.settings = RunSettings(resolver=FileResolver(base_dirs=(folder, ROOT / "graphs")))

    def run(self, targets: list[str], **params):
        for key, value in params.items():
            node, param = key.split("__")
            self.graph.set_param(node, param, value)
        result = self.executor.run(self.graph, targets, self.settings)
        if result.status != "ok":
            raise SystemExit(f"graph run failed: {result.status} {result.errors or result.problems}")
        return result.outputs


def _picture(outputs, node: str = "decode") -> np.ndarray:
    image = np.asarray(outputs[node]["image"])[0]
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _save(folder: Path, name: str, rgb: np.ndarray) -> str:
    cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return name


def edit_cases(count: int, seed: int) -> list[tuple[np.ndarray, Sample, Sample]]:
    """Fresh pictures and an edit each, alternating colour and shape edits."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        picture, sample = random_sample(rng)
        if i % 2 == 0:
            choices = [c for c in COLOURS if c not in (sample.colour, sample.background)]
            target = Sample(str(rng.choice(choices)), sample.shape, sample.background)
        else:
            choices = [s for s in SHAPES if s != sample.shape]
            target = Sample(sample.colour, str(rng.choice(choices)), sample.background)
        cases.append((picture, sample, target))
    return cases


def _shape_mask(picture: np.ndarray) -> np.ndarray:
    """The pixels that differ from the border's median colour: the shape."""
    pixels = picture.astype(np.float32)
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3)])
    return np.sqrt(((pixels - np.median(border, axis=0)) ** 2).sum(axis=2)) > 60


def _overlap(before: np.ndarray, after: np.ndarray) -> tuple[float, float] | None:
    """(centre shift in pixels, intersection over union) of the shapes before and after, or None."""
    a, b = _shape_mask(before), _shape_mask(after)
    if not a.any() or not b.any():
        return None
    centre = [np.array(np.nonzero(m)).mean(axis=1) for m in (a, b)]
    return float(np.linalg.norm(centre[1] - centre[0])), float((a & b).sum() / (a | b).sum())


def edits(args, folder: Path) -> list[np.ndarray]:
    runner = Runner("edit_inversion", folder)
    common = {"schedule__steps": args.steps, "invert__method": args.method,
              "invert_guidance__scale": args.invert_scale, "schedule__denoise": args.denoise}  # fmt: skip
    kept, changed, errors, shifts, ious, sheet = 0, 0, [], [], {"colour": [], "shape": []}, []
    cases = edit_cases(args.count, args.seed)
    for i, (picture, sample, target) in enumerate(cases):
        path = _save(folder, f"edit{i}.png", picture)
        same = runner.run(["encode", "sampler"], image__path=path, source__text=sample.caption,
                          prompt__text=sample.caption, invert__seed=i, **common,
                          guidance__scale=args.invert_scale)  # fmt: skip
        z, back = same["encode"]["latent"].samples, same["sampler"]["latent"].samples
        errors.append(float((back - z).norm() / z.norm()))
        out = _picture(runner.run(["decode"], prompt__text=target.caption, guidance__scale=args.scale))
        seen = judge(out)
        attribute = "colour" if target.colour != sample.colour else "shape"
        other = "shape" if attribute == "colour" else "colour"
        made = seen.found and getattr(seen, attribute) == getattr(target, attribute)
        kept_rest = seen.background == sample.background and getattr(seen, other) == getattr(sample, other)
        changed += made
        kept += made and kept_rest
        moved = _overlap(picture, out)
        if moved is not None:
            shifts.append(moved[0])
            ious[attribute].append(moved[1])
        sheet.append(np.concatenate([picture, out], axis=1))
    n = len(cases)
    print(f"edits ({args.method}, {args.steps} steps, invert CFG {args.invert_scale}, edit CFG {args.scale}, "
          f"denoise {args.denoise}): {n} pictures")  # fmt: skip
    print(
        f"  round trip, same prompt: relative latent error mean {np.mean(errors):.2e} max {np.max(errors):.2e}"
    )
    print(
        f"  edit made: {changed / n:.1%}; made with background and the other attribute kept: {kept / n:.1%}"
    )
    print(f"  the shape stays in place: its centre moved {np.mean(shifts):.1f} px on average (64x64 pictures); "
          f"shape before/after IoU {np.mean(ious['colour']):.2f} for colour edits, "
          f"{np.mean(ious['shape']):.2f} for shape edits")  # fmt: skip
    return sheet


def inpaints(args, folder: Path) -> list[np.ndarray]:
    runner = Runner("inpaint", folder)
    rng = np.random.default_rng(args.seed + 1)
    good, outside, sheet = 0, [], []
    names = list(COLOURS)
    for i in range(args.count):
        background = names[int(rng.integers(len(names)))]
        colour = str(rng.choice([c for c in names if c != background]))
        sample = Sample(colour, str(rng.choice(SHAPES)), background)
        plain = draw("square", COLOURS[background], COLOURS[background], 0.5, 0.5, 0.1, 64, 64, 0.0)
        side = int(rng.integers(28, 41))
        top, left = (int(v) for v in rng.integers(2, 62 - side, 2))
        mask = np.zeros((64, 64, 3), np.uint8)
        mask[top : top + side, left : left + side] = 255
        out = _picture(
            runner.run(
                ["decode"],
                image__path=_save(folder, f"plain{i}.png", plain),
                mask__path=_save(folder, f"mask{i}.png", mask),
                prompt__text=sample.caption,
                sampler__seed=args.seed + i,
                schedule__steps=args.steps,
                guidance__scale=args.inpaint_scale,
            )  # fmt: skip
        )
        seen = judge(out)
        inside = mask[..., 0] > 0
        ys, xs = np.nonzero(np.abs(out.astype(int) - plain.astype(int)).sum(axis=2) > 60)
        centre_in = len(ys) > 0 and inside[int(np.median(ys)), int(np.median(xs))]
        ok = seen.found and (seen.colour, seen.shape, seen.background) == (colour, sample.shape, background)
        good += bool(ok and centre_in)
        outside.append(float(np.abs(out.astype(float) - plain.astype(float))[~inside].mean()))
        sheet.append(np.concatenate([plain, mask, out], axis=1))
    print(f"inpaint ({args.steps} steps, CFG {args.inpaint_scale}): {args.count} pictures; new shape as asked, inside the mask: "
          f"{good / args.count:.1%}; mean change outside the mask {np.mean(outside):.2f}/255")  # fmt: skip
    return sheet


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--method", default="edit_friendly", choices=("ddim", "bdia", "edit_friendly"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scale", type=float, default=7.5, help="the edit's CFG scale")
    parser.add_argument("--invert-scale", type=float, default=3.5, help="CFG scale while inverting")
    parser.add_argument(
        "--denoise", type=float, default=0.6, help="the graph's default: invert 60 %% of the way"
    )
    parser.add_argument("--inpaint-scale", type=float, default=7.5, help="inpaint.json's CFG scale")
    parser.add_argument("--skip-inpaint", action="store_true")
    parser.add_argument("--skip-edits", action="store_true")
    parser.add_argument("--sheet", type=Path, help="write before/after rows of the first 8 of each")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        if not args.skip_edits:
            rows += edits(args, Path(scratch))[:8]
        if not args.skip_inpaint:
            rows += inpaints(args, Path(scratch))[:8]
    if args.sheet and rows:
        width = max(r.shape[1] for r in rows)
        padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        sheet = cv2.resize(np.concatenate(padded), None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
