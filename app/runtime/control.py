"""ControlNet inside the denoising loop: the hints that Apply ControlNet attaches to a CONDITIONING, and the
residuals they add to the UNet (or, for SD3 and Flux ControlNets, what the family's `forward` needs to add
their block samples to the transformer) at one step.

It follows StableDiffusionControlNetPipeline: the control image is duplicated for the [uncond, cond] halves of
a CFG batch; in guess mode only the cond half goes through the ControlNet (the uncond half gets zero
residuals); a hint acts only on the steps inside its [start, end] window (the pipelines' `controlnet_keep`);
several hints add their residuals (MultiControlNetModel).

torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.engine.codec import persistable
from app.engine.context import NodeError
from app.runtime.values import CheckpointSource


@persistable
@dataclass(frozen=True)
class ControlNetHandle:
    """CONTROL_NET: which ControlNet (a diffusers folder or a single file + its config skeleton) and its family."""

    source: CheckpointSource
    family: str


@persistable
@dataclass(frozen=True)
class Hint:
    """One applied ControlNet: the prepared control image (1 or B, 3, H, W) float 0..1 on the CPU, or, for a
    diffusion transformer's ControlNet (`latents`), that image VAE-encoded as the latent format stores it
    (1 or B, C, h, w); its strength (conditioning scale), window [start, end] as fractions of the schedule,
    and guess mode (UNet ControlNets)."""

    controlnet: ControlNetHandle
    image: Any
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess_mode: bool = False
    latents: bool = False


def prepare_image(image: Any) -> Any:
    """IMAGE (B, H, W, 3) numpy RGB 0..1 -> a (B, 3, H, W) float32 CPU tensor, as the pipelines feed it."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()


def active(hint: Hint, step: int, total: int) -> bool:
    """The pipelines' controlnet_keep rule: the step's span [i/N, (i+1)/N] lies inside [start, end]."""
    return hint.strength != 0 and not (step / total < hint.start or (step + 1) / total > hint.end)


def residuals(
    hints: tuple[Hint, ...],
    nets: list[Any],
    step: int,
    total: int,
    x_in: Any,
    t: Any,
    model_kwargs: dict[str, Any],
    halves: int,
) -> dict[str, Any]:
    """UNet keyword arguments (down_block_additional_residuals, mid_block_additional_residual) for a model
    call on `x_in` with `model_kwargs` (the text embeddings and the family's added inputs, which the
    ControlNet takes too); `halves` = 2 for a CFG batch [uncond, cond], else 1. {} when no hint is active."""
    import torch

    if any(hint.latents for hint in hints):
        return _transformer_residuals(hints, nets, step, total, x_in, t, model_kwargs)
    down, mid = None, None
    for hint, net in zip(hints, nets, strict=True):
        if not active(hint, step, total):
            continue
        x, kwargs = x_in, model_kwargs
        if hint.guess_mode and halves == 2:
            x, kwargs = x_in.chunk(2)[1], _second_half(model_kwargs)
        image = _image_for(hint.image, net, x)
        d, m = net(
            x,
            t,
            controlnet_cond=image,
            conditioning_scale=float(hint.strength),
            guess_mode=hint.guess_mode,
            return_dict=False,
            **kwargs,
        )
        if hint.guess_mode and halves == 2:
            d = [torch.cat([torch.zeros_like(r), r]) for r in d]
            m = torch.cat([torch.zeros_like(m), m])
        down = list(d) if down is None else [a + b for a, b in zip(down, d, strict=True)]
        mid = m if mid is None else mid + m
    if down is None:
        return {}
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def _transformer_residuals(hints, nets, step: int, total: int, x_in: Any, t: Any, model_kwargs: dict) -> dict:
    """Diffusion transformers' ControlNets: the active ones with their control latents (batched like the
    call) and scales, as `controlnets` for the family's `forward`, which runs them on the inputs it makes
    for the transformer (Flux packs and positions its tokens) and adds their block samples."""
    active_nets = []
    for hint, net in zip(hints, nets, strict=True):
        if not active(hint, step, total):
            continue
        cond = hint.image.to(x_in.device, x_in.dtype)
        if tuple(cond.shape[-2:]) != tuple(x_in.shape[-2:]):
            raise NodeError(
                f"the control image's latents are {cond.shape[-1]}x{cond.shape[-2]} but the picture's are "
                f"{x_in.shape[-1]}x{x_in.shape[-2]}: give the control image the output size (Upscale Image)"
            )
        if cond.shape[0] != x_in.shape[0]:
            cond = cond.repeat(x_in.shape[0] // cond.shape[0], 1, 1, 1)
        active_nets.append((net, cond, float(hint.strength)))
    return {"controlnets": active_nets} if active_nets else {}


def add_samples(total: list[Any] | None, samples: Any) -> list[Any] | None:
    """Block samples of several ControlNets, summed per block (None stays None)."""
    if samples is None:
        return total
    return list(samples) if total is None else [a + b for a, b in zip(total, samples, strict=True)]


def _second_half(value: Any) -> Any:
    """The cond half of every tensor in a (nested) dict of [uncond, cond] batches."""
    if isinstance(value, dict):
        return {k: _second_half(v) for k, v in value.items()}
    return value.chunk(2)[1]


def _image_for(image: Any, net: Any, x: Any) -> Any:
    """The control image at the size the ControlNet expects for latents `x`, batched like `x`."""
    import torch.nn.functional as F

    factor = 2 ** (len(net.config.conditioning_embedding_out_channels) - 1)
    size = (x.shape[-2] * factor, x.shape[-1] * factor)
    image = image.to(x.device, x.dtype)
    if tuple(image.shape[-2:]) != size:
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    if image.shape[0] != x.shape[0]:
        image = image.repeat(x.shape[0] // image.shape[0], 1, 1, 1)
    return image


def binder(hints: tuple[Hint, ...], nets: list[Any]) -> Callable[..., dict[str, Any]] | None:
    """`extra(step, x_in, t, model_kwargs, halves, total=N)` -> UNet kwargs for the sampling loop; None
    without hints."""
    if not hints:
        return None

    def extra(step: int, x_in: Any, t: Any, model_kwargs: dict, halves: int, total: int) -> dict[str, Any]:
        return residuals(hints, nets, step, total, x_in, t, model_kwargs, halves)

    return extra
