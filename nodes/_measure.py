"""The measure hooks of the nodes whose cost matters (app/engine/resources.py says what the facts mean and
how they add up). The constants are rough, from published and measured figures:

- a UNet pass costs about 2 x params FLOPs per 9 latent pixels (SD1.5's 0.86 B parameters at 512², 64x64
  latents: about 0.8 TFLOP); a transformer on 2x2 patches 2 x params per token (4 latent pixels);
- while sampling, about 200 numbers per image pixel and model pass are alive (activations, with attention
  that never holds the full token x token matrix);
- an untiled SD VAE decode (84 M parameters) holds about 512 numbers per output pixel at once (2 GB per
  megapixel in fp32) and costs about 1e7 FLOPs per pixel; an encode about half. Other VAEs scale with their
  parameter count (work) and its square root (width of the feature maps, so memory).

Only safetensors headers are read (no weights). Pure Python; never import torch or Qt here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.runtime import checkpoints

Facts = dict[str, float]

SAMPLER_NUMBERS_PER_PIXEL = 200
VAE_NUMBERS_PER_PIXEL = 512
VAE_FLOPS_PER_PIXEL = 1e7
LATENT_PIXELS = 64  # image pixels per latent pixel (8 x 8) in every family here
SD_VAE = 83.7e6  # parameters of SD's (and SDXL's, SD3's, Flux's: within 1 %) VAE
VAE_PREFIXES = ("first_stage_model.", "vae.")


def weights(*paths: str | Path) -> Facts:
    """A loader of weight files: it holds every parameter in them for the run."""
    return {"weights": float(sum(checkpoints.parameter_count(Path(p)) for p in paths if p))}


def vae_weights(path: str | Path) -> Facts:
    """Load VAE: its weights, and its size for VAE Encode / Decode."""
    found = weights(path)
    return {**found, "vae": found["weights"]}


def denoiser(path: str | Path, dit: bool, one_pass: bool = False) -> Facts:
    """A loader whose MODEL output is the denoiser in `path` (a checkpoint folder or file, or a diffusion
    model on its own): all its weights held, the denoiser's parameter count passed on."""
    path = Path(path)
    total = checkpoints.parameter_count(path)
    if path.is_dir():
        part = next((path / p for p in ("transformer", "unet") if (path / p).is_dir()), path)
        params = checkpoints.parameter_count(part)
        vae = checkpoints.parameter_count(path / "vae") if (path / "vae").is_dir() else 0
    else:
        params = checkpoints.parameter_count(path, checkpoints.DIT_PREFIX) or total
        vae = max(checkpoints.parameter_count(path, prefix) for prefix in VAE_PREFIXES)
    found = {"weights": float(total), "params": float(params), "dit": float(dit), "one_pass": float(one_pass)}
    return {**found, "vae": float(vae)} if vae else found


def pixels(width: int, height: int, batch: float = 1.0) -> Facts:
    return {"pixels": float(width * height * batch), "batch": float(batch)}


def vae(image: Facts, model: Facts, tiled: bool, encode: bool = False) -> Facts:
    """VAE Decode / Encode of `image` pixels with the VAE `model`: its peak (a tile's worth when tiled) and
    its work."""
    count = image.get("pixels", 0.0)
    held = min(count, 512 * 512 * image.get("batch", 1.0)) if tiled else count
    size = model.get("vae", SD_VAE) / SD_VAE
    share = 0.5 if encode else 1.0
    return {
        **image,
        "peak": held * VAE_NUMBERS_PER_PIXEL * share * size**0.5,
        "flops": count * VAE_FLOPS_PER_PIXEL * share * size,
    }


def sampler(inputs: dict[str, Facts]) -> Facts:
    """A Sampler's work: steps x model passes x one pass over the latent's pixels."""
    model, latent = inputs.get("model", {}), inputs.get("latent", {})
    count = latent.get("pixels", 0.0)
    steps = inputs.get("schedule", {}).get("steps", 20.0)
    branches = inputs.get("guider", {}).get("branches", 2.0)
    if model.get("one_pass") and branches == 2.0 and not inputs.get("guider", {}).get("true_cfg"):
        branches = 1.0  # Flux dev's distilled guidance: one pass per step
    latent_pixels = count / LATENT_PIXELS
    per_pass = 2 * model.get("params", 0.0) * latent_pixels / (4 if model.get("dit") else 9)
    return {
        **latent,
        "peak": branches * count * SAMPLER_NUMBERS_PER_PIXEL,
        "flops": steps * branches * per_pass,
    }


def guidance(params: dict[str, Any], perturbs: bool) -> Facts:
    """Model passes per step: one for CFG at scale 1, three for methods that add a perturbed pass (PAG, SEG,
    skip-layer), else two; `true_cfg` says a Flux model gets a real negative pass."""
    if params.get("scale") == 1.0 and params.get("method") == "cfg":
        return {"branches": 1.0}
    return {"branches": 3.0 if perturbs else 2.0, "true_cfg": float(params.get("true_cfg", 1.0) > 1.0)}
