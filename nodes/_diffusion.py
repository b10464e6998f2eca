"""Helpers shared by the diffusion node families (not a node family: the registry skips files named _*).

Imports torch only inside functions; never import Qt here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.engine.context import Context, NodeError
from app.engine.events import EventKind
from app.runtime import device as devices
from app.runtime import lora
from app.runtime.control import ControlNetHandle
from app.runtime.models import Loaded, manager
from app.runtime.values import CheckpointSource, LoraPatch, VaeHandle

LORAS_KEPT = 8  # converted LoRA files remembered per loaded checkpoint


def load(ctx: Context, source: CheckpointSource) -> tuple[Loaded, Any]:
    """The checkpoint's components for this run's device (loaded once per process), and the device.
    Model manager events (load, offload, free) during the call become this node's `model` events."""
    device = devices.torch_device(ctx.device)
    with _forwarded(ctx):
        return manager().load(source, device), device


def vae_module(ctx: Context, vae: VaeHandle) -> Any:
    """The VAE a handle names, on this run's device: a checkpoint's part, or a VAE loaded on its own."""
    if not vae.standalone:
        loaded, device = load(ctx, vae.source)
        return loaded.on("vae", device)
    from app.runtime.vaes import read

    with _forwarded(ctx):
        return manager().load_module("vae", vae.source, devices.torch_device(ctx.device), read, part="vae")


def controlnet_module(ctx: Context, handle: ControlNetHandle) -> Any:
    """The handle's ControlNetModel on this run's device, loaded once per process by the model manager."""
    from app.runtime.controlnets import read

    with _forwarded(ctx):
        return manager().load_module("controlnet", handle.source, devices.torch_device(ctx.device), read)


def lora_files(ctx: Context, loaded: Loaded, patches: Iterable[Any]) -> list[tuple[lora.LoraFile, float]]:
    """The LoRA patches among `patches`, read and converted once per loaded checkpoint (LRU of LORAS_KEPT)."""
    found = []
    for patch in patches:
        if not isinstance(patch, LoraPatch) or patch.strength == 0:
            continue
        key = ("lora", patch.source.path, patch.source.fingerprint)
        cached = loaded.derived.pop(key, None)
        if cached is None:
            try:
                denoiser = loaded.modules.get(loaded.family.denoiser)
                config = denoiser.config if denoiser is not None else None
                cached = lora.read(Path(patch.source.path), config, loaded.family)
            except lora.LoraProblem as error:
                raise NodeError(str(error)) from None
        loaded.derived[key] = cached  # most recently used last
        found.append((cached, patch.strength))
    for old in [k for k in loaded.derived if k[0] == "lora"][:-LORAS_KEPT]:
        del loaded.derived[old]
    return found


def report_loras(ctx: Context, applied: lora.Applied) -> None:
    """A warning event per LoRA file with keys that were not applied, and the count on the finished event."""
    for message in applied.warnings():
        ctx.emit(EventKind.WARNING, message=message)
    if applied.changed:
        ctx.report(lora_layers=applied.changed)


@contextmanager
def _forwarded(ctx: Context) -> Iterator[None]:
    """Model manager events during the block become this node's `model` events."""

    def forward(event: dict[str, Any]) -> None:
        ctx.emit(EventKind.MODEL, **{k: v for k, v in event.items() if k != "event"})

    models = manager()
    models.add_listener(forward)
    try:
        yield
    finally:
        models.remove_listener(forward)


def inference() -> Any:
    """The context every diffusion node body runs under (no autograd bookkeeping)."""
    import torch

    return torch.inference_mode()
