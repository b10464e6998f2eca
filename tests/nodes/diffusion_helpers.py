"""Shared by the diffusion node tests: a tiny random SD1.5-layout model on disk, the shipped graphs pointed
at it, and the diffusers pipelines built from the same folder as the reference."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.graph import serialize
from app.registry import default_registry
from tools.make_tiny_random_model import write

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-oracle"
SIZE = 32

torch.set_num_threads(1)  # the test machine is shared; tiny models run fastest on one thread


def make_model_root(folder: Path) -> Path:
    """Write the tiny model under `folder` and make `folder` the first model root for the rest of the
    process (prefer the `model_path` fixture of tests/nodes/conftest.py, which restores the roots)."""
    path = folder / MODEL
    if not path.exists():
        write(path, seed=0)
    os.environ["NODELOOM_MODEL_ROOTS"] = str(folder)
    return path


@contextmanager
def model_root(folder: Path) -> Iterator[Path]:
    """Write the tiny model under `folder` and make `folder` the first model root while inside."""
    path = folder / MODEL
    if not path.exists():
        write(path, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NODELOOM_MODEL_ROOTS", str(folder))
        yield path


def graph(name: str = "txt2img", **params):
    """A shipped graph on the tiny model at SIZE x SIZE; params as node__param=value."""
    loaded = serialize.load(ROOT / "graphs" / f"{name}.json", default_registry())
    loaded.set_param("model", "checkpoint", MODEL)
    if "latent" in loaded.nodes:
        loaded.set_param("latent", "width", SIZE)
        loaded.set_param("latent", "height", SIZE)
    for key, value in params.items():
        node_id, param = key.split("__")
        loaded.set_param(node_id, param, value)
    return loaded


def run(
    executor: Executor, g, target: str = "sampler", events: list | None = None, token=None, output_dir=None
):
    settings = RunSettings(
        device="cpu", output_dir=output_dir or Path("output"), graph_json=serialize.dumps(g)
    )
    result = executor.run(
        g, [target], settings, on_event=(events.append if events is not None else None), token=token
    )
    assert result.status in ("ok", "cancelled"), (
        result.status,
        result.errors,
        [str(p) for p in result.problems],
    )
    return result


def executor() -> Executor:
    return Executor(default_registry())


def pipeline(model_path: Path, scheduler=None, img2img: bool = False):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
    pipe = cls.from_pretrained(
        model_path, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    if scheduler is not None:
        pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    return pipe
