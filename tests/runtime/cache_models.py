"""Tiny random models and a plain sampling loop for the cache tests (configs from diffusers' own tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel

TEXT_DIM = 8


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models run ~100x slower with two threads on a busy shared machine; use one, then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_unet(layers: int = 1) -> UNet2DConditionModel:
    """diffusers' StableDiffusion test UNet (two levels, cross-attention on the deep one)."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=layers,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        norm_num_groups=2,
    ).eval()


def tiny_sdxl_unet() -> UNet2DConditionModel:
    """diffusers' SDXL test UNet shape: text_time added conditioning, linear projections."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=1,
    ).eval()


def tiny_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    torch.manual_seed(1)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)).eval()
    # from_unet zero-initialises the output convs; give them weights so the residuals matter.
    with torch.no_grad():
        for conv in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
            conv.weight.normal_(0, 0.3)
    return controlnet


def scheduler(steps: int = 10) -> DDIMScheduler:
    ddim = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    ddim.set_timesteps(steps)
    return ddim


def inputs(batch: int = 1, size: int = 16, seed: int = 0):
    """(latents, cond text, uncond text) for one image of `size` x `size` latents."""
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, size, size, generator=generator)
    cond = torch.randn(batch, 7, TEXT_DIM, generator=generator)
    uncond = torch.randn(batch, 7, TEXT_DIM, generator=generator)
    return latents, cond, uncond


def sample(
    denoise, latents, cond, uncond=None, steps=10, guidance=5.0, controlnet=None, hint=None, sequential=False
):
    """A plain DDIM loop like the Sampler's: optional CFG (one batch or two passes) and ControlNet residuals.

    `denoise(step_index, sample, timestep, text, **kwargs)` is a cache runner, or `plain(unet)`.
    """
    ddim = scheduler(steps)
    x = latents * ddim.init_noise_sigma
    with torch.no_grad():
        for i, t in enumerate(ddim.timesteps):
            x_in = ddim.scale_model_input(x, t)
            passes = [(x_in, cond)] if uncond is None else [(x_in, uncond), (x_in, cond)]
            if not sequential and len(passes) == 2:
                passes = [(torch.cat([x_in, x_in]), torch.cat([uncond, cond]))]
            outs = []
            for sample_in, text in passes:
                extra = {}
                if controlnet is not None:
                    control = torch.cat([hint] * (sample_in.shape[0] // hint.shape[0]))
                    down, mid = controlnet(sample_in, t, text, controlnet_cond=control, return_dict=False)
                    extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
                outs.append(denoise(i, sample_in, t, text, **extra))
            eps = torch.cat(outs)
            if uncond is not None:
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + guidance * (eps_cond - eps_uncond)
            x = ddim.step(eps, t, x).prev_sample
    return x


def plain(unet):
    """The uncached model call with the runner's signature."""
    return lambda i, x, t, text, **kwargs: unet(x, t, text, **kwargs).sample


def model_state(model: torch.nn.Module):
    """What a run must leave unchanged: weights, instance attributes and torch hooks of every module."""
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    modules = {
        name: (sorted(vars(module)), len(module._forward_hooks), len(module._forward_pre_hooks))
        for name, module in model.named_modules()
    }
    return weights, modules
