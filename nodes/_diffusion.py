"""Helpers shared by the diffusion node families (not a node family: the registry skips files named _*).

Imports torch only inside functions; never import Qt here.
"""

from __future__ import annotations

from typing import Any

from app.engine.context import Context
from app.runtime import device as devices
from app.runtime.models import Loaded, manager
from app.runtime.values import CheckpointSource


def load(ctx: Context, source: CheckpointSource) -> tuple[Loaded, Any]:
    """The checkpoint's components for this run's device (loaded once per process), and the device.
    Model manager events (load, offload, free) during the call become this node's `model` events."""
    device = devices.torch_device(ctx.device)

    def forward(event: dict[str, Any]) -> None:
        ctx.emit("model", **{k: v for k, v in event.items() if k != "event"})

    models = manager()
    models.add_listener(forward)
    try:
        return models.load(source, device), device
    finally:
        models.remove_listener(forward)


def inference() -> Any:
    """The context every diffusion node body runs under (no autograd bookkeeping)."""
    import torch

    return torch.inference_mode()
