"""The values that flow along diffusion sockets: frozen dataclasses, never mutated once made.

MODEL, CLIP and VAE are handles: they name a checkpoint (path + fingerprint) that the model manager loads
once per process; they are never written to the disk cache (the loader node has disk_cache=False).
CONDITIONING, LATENT, SCHEDULE and GUIDER are registered with the result codec, so they are cached on disk
and a disk hit is bit-identical to a fresh run. Tensor fields hold torch tensors on the CPU or the device.

No torch import here (fields are typed Any); never import Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.engine.codec import persistable


@persistable
@dataclass(frozen=True)
class CheckpointSource:
    """Where a model's weights are: a diffusers folder, or a single file plus its config skeleton folder,
    or (`parts`) separate files for some of a model's components, read one by one with that skeleton (a
    Flux diffusion model on its own; clip_l + t5xxl for its text encoders)."""

    path: str
    fingerprint: str  # sha256 of (path, size, mtime) of every weight file: changes when they do
    config: str = ""  # skeleton folder for a single-file checkpoint; "" for a diffusers folder
    parts: tuple[tuple[str, str], ...] = ()  # (component, file) pairs; () = the whole checkpoint


@persistable
@dataclass(frozen=True)
class LoraPatch:
    """A LoRA file (path + fingerprint) added at `strength` to a MODEL's UNet or a CLIP's text encoders."""

    source: CheckpointSource
    strength: float


@dataclass(frozen=True)
class ModelHandle:
    """MODEL: the denoiser (UNet) of a checkpoint, how it was trained to predict, and `patches`: what nodes
    between the loader and the Sampler added, in order (LoRA weights, a feature-cache policy). Nodes add a
    patch with `dataclasses.replace(model, patches=(*model.patches, patch))`; the Sampler applies them for
    its loop and removes them after, so the loaded weights are shared and never changed for good."""

    source: CheckpointSource
    family: str
    prediction_type: str = "epsilon"
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    patches: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ClipHandle:
    """CLIP: the tokenizers and text encoders of a checkpoint, with LoRA patches for Text Encode."""

    source: CheckpointSource
    family: str
    patches: tuple[LoraPatch, ...] = ()


@dataclass(frozen=True)
class VaeHandle:
    """VAE: the autoencoder; `pixels_per_latent` = image pixels per latent pixel along a side (8 for SD),
    latents are stored as (z - latent_shift) * latent_scale (the VAE config's `shift_factor`, 0 for SD
    and SDXL, and `scaling_factor`). `standalone`: the source is a VAE on its own (Load VAE), not a
    checkpoint's part."""

    source: CheckpointSource
    family: str
    pixels_per_latent: int = 8
    latent_channels: int = 4
    latent_scale: float = 0.18215
    standalone: bool = False
    latent_shift: float = 0.0


@persistable
@dataclass(frozen=True)
class Conditioning:
    """CONDITIONING: text embeddings (B, tokens, dim), the pooled embedding (SDXL-class models read it),
    `pad` = the embedding of one empty 77-token chunk (to even out prompts of different lengths, A1111-style),
    `hints` = ControlNets attached by Apply ControlNet, `size` = SDXL's size conditioning (original h, w,
    crop top, left, target h, w; 0 = the image size; () = all from the image) and `aesthetic_score` for
    the SDXL refiner (None = 6.0 positive, 2.5 negative)."""

    embeddings: Any
    family: str | None = None
    pooled: Any = None
    pad: Any = None
    hints: tuple = ()
    size: tuple[int, ...] = ()
    aesthetic_score: float | None = None


@persistable
@dataclass(frozen=True)
class Latent:
    """LATENT: samples (B, C, h, w) as the VAE's latent format stores them ((z - shift) * scale), their
    family, how many image pixels one latent pixel covers (along a side), an optional noise mask
    (1 or B, 1, h, w; 1 = repaint, 0 = keep these samples: Set Latent Noise Mask, the Sampler blends) and,
    from an Invert node, the inversion (app.runtime.inversion.Inversion) the Sampler samples down."""

    samples: Any
    family: str | None = None
    pixels_per_latent: int = 8
    mask: Any = None
    inversion: Any = None


@persistable
@dataclass(frozen=True)
class Schedule:
    """SCHEDULE: which diffusers scheduler, how many steps (or which explicit timesteps), the sigma
    spacing (simple = the scheduler's own, karras, exponential, beta), the denoise strength (1.0 = from
    pure noise; below 1 = img2img from the input latent) and, for flow-matching models, the shift
    (0 = the checkpoint's own, dynamic for Flux dev)."""

    scheduler: str = "euler"
    steps: int = 20
    denoise: float = 1.0
    sigmas: str = "simple"
    timesteps: tuple[int, ...] = ()
    shift: float = 0.0


@persistable
@dataclass(frozen=True)
class Guider:
    """GUIDER: a guidance method, its scale and method options (see app.runtime.guidance.METHODS)."""

    method: str = "cfg"
    scale: float = 7.5
    options: dict[str, Any] = field(default_factory=dict)
    family: str | None = None
