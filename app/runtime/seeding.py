"""Seeds to noise, the same way the diffusers pipelines do it, so results match them and every GPU.

The initial noise for seed S is `randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(S))`
made on the CPU and moved to the device. The same generator then feeds ancestral/SDE scheduler steps.
A batch of B latents draws its noise from that ONE generator in one call (shape (B, C, H, W)), exactly
like a diffusers pipeline given one generator: item k of a batch is not the image seed S+k gives alone.

torch is imported inside the functions; never import Qt here.
"""

from __future__ import annotations

from typing import Any


def cpu_generator(seed: int) -> Any:
    """A CPU generator seeded with `seed` (any value 0 .. 2**64 - 1)."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


def initial_noise(shape: tuple[int, ...], generator: Any, device: Any, dtype: Any) -> Any:
    """Gaussian noise drawn on the CPU from `generator`, placed on `device` (diffusers' randn_tensor)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(tuple(shape), generator=generator, device=device, dtype=dtype)
