"""Tiny SD3 and Flux models for the flow-family tests: diffusers folders without tokenizer folders (the
shipped CLIP and T5 tokenizers are used, as for real split files), their pipelines, and graphs on them."""

from __future__ import annotations

from pathlib import Path

import torch

from app.runtime import tokenizers
from tests.nodes import diffusion_helpers as h
from tools import make_tiny_random_dit as dit

SD3, SD35, FLUX, SCHNELL = "tiny-sd3", "tiny-sd35", "tiny-flux", "tiny-flux-schnell"
SIZE = 64  # 8 latent pixels a side: 16 SD3 patches, 16 packed Flux tokens
PROMPT = "a photo of an astronaut riding a horse, wow!"


def write_models(folder: Path) -> None:
    """Every tiny flow model the tests load, under the model root `folder` (fp32 weights)."""
    dit.write("sd3", folder / SD3, seed=0)
    dit.write("sd3", folder / SD35, seed=1, sd35=True)
    dit.write("flux", folder / FLUX, seed=2)
    dit.write("flux", folder / SCHNELL, seed=3, guidance_embeds=False)


def kind(name: str) -> str:
    return "sd3" if name.startswith("tiny-sd3") else "flux"


def pipeline(path: Path, **components):
    """diffusers' own pipeline on a tiny folder, with the shipped tokenizers."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    if kind(path.name) == "sd3":
        cls = StableDiffusion3Pipeline
        shipped = {
            "tokenizer": tokenizers.clip(),
            "tokenizer_2": tokenizers.clip("!"),
            "tokenizer_3": tokenizers.t5(),
        }
    else:
        cls = FluxPipeline
        shipped = {"tokenizer": tokenizers.clip(), "tokenizer_2": tokenizers.t5()}
    pipe = cls.from_pretrained(path, local_files_only=True, **{**shipped, **components})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference(pipe, steps: int, scale: float, seed: int, size: int = SIZE, **kwargs):
    """The pipeline's final latents, unpacked to (B, 16, h, w) for Flux."""
    latents = pipe(
        PROMPT,
        num_inference_steps=steps,
        guidance_scale=scale,
        height=size,
        width=size,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
        **kwargs,
    ).images
    if latents.ndim == 3:
        latents = pipe._unpack_latents(latents, size, size, pipe.vae_scale_factor)
    return latents


def graph(name: str, model: str, **params):
    """A shipped graph on a tiny flow model at SIZE x SIZE, seed 0 (see diffusion_helpers.graph)."""
    params = {"sampler__seed": 0, "latent__width": SIZE, "latent__height": SIZE, **params}
    g = h.graph(name, **params)
    g.set_param("model", "checkpoint", model)
    return g


def families_flux():
    from app.runtime import families

    return families.by_name("flux")
