"""DeepCache (Ma, Fang, Wang 2023, arXiv 2312.00858) for diffusers' UNet2DConditionModel, as our own UNet walk.

A UNet's up path reads one skip connection per layer, deepest first. Branch b keeps skip connections 0..b
(0 is conv_in's output): on a full step the walk runs the whole UNet and remembers the feature that enters the
up layer reading skip b; on a cached step it runs only the shallow branch (time embedding, conv_in, the down
layers that make skips 1..b, then the remembered feature through the up layers from skip b on, conv_out).
The model is only read, never patched, so nothing can leak out of a run.

`UNetWalk` mirrors `UNet2DConditionModel.forward` of diffusers 0.42.1 (pinned) layer by layer, so a full walk
equals the model's own forward exactly (tests check this). ControlNet residuals are added where the model adds
them; T2I-Adapter residuals and GLIGEN are refused rather than approximated.

torch and diffusers are imported here (runtime layer); never import Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_blocks import (
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    DownBlock2D,
    UpBlock2D,
)
from diffusers.utils.torch_utils import apply_freeu

from app.runtime.step_cache.base import CacheError, Denoiser

DOWN_BLOCKS = (DownBlock2D, CrossAttnDownBlock2D)
UP_BLOCKS = (UpBlock2D, CrossAttnUpBlock2D)


@dataclass
class _Call:
    """Per-call values every layer needs (embeddings, masks, ControlNet residuals)."""

    emb: torch.Tensor
    text: torch.Tensor
    attention: dict[str, Any]
    down_residuals: tuple[torch.Tensor, ...] | None
    mid_residual: torch.Tensor | None
    pass_upsample_size: bool


class UNetWalk:
    """The layer order of one supported UNet, and walks through it that may start or stop at a skip branch.

    Units of work ("blocks") are the UNet's building blocks: each resnet, each transformer (attention) block,
    each down/upsampler, and the mid block.
    """

    def __init__(self, unet: Any) -> None:
        if not isinstance(unet, UNet2DConditionModel):
            raise CacheError(f"deepcache works on UNet2DConditionModel models, not {type(unet).__name__}")
        for block in (*unet.down_blocks, *unet.up_blocks):
            if not isinstance(block, DOWN_BLOCKS + UP_BLOCKS):
                raise CacheError(f"deepcache does not know the UNet block {type(block).__name__}")
        self.unet = unet
        # Down layers in run order: (block, resnet index) or (block, None) for its downsampler.
        self.down: list[tuple[Any, int | None]] = []
        for block in unet.down_blocks:
            self.down.extend((block, j) for j in range(len(block.resnets)))
            if block.downsamplers is not None:
                self.down.append((block, None))
        # Up layers in run order: (block index, resnet index); layer L reads skip `skips - 1 - L`.
        self.up = [(i, j) for i, block in enumerate(unet.up_blocks) for j in range(len(block.resnets))]
        self.skips = len(self.down) + 1
        if len(self.up) != self.skips:
            raise CacheError("this UNet's up path does not read one skip connection per layer")
        self.total_blocks = self.blocks_run(self.skips - 1) + (unet.mid_block is not None)

    def check_branch(self, branch: int) -> None:
        if not 0 <= branch < self.skips:
            raise CacheError(f"branch must be between 0 and {self.skips - 1} for this UNet, got {branch}")

    def blocks_run(self, branch: int) -> int:
        """Blocks a shallow pass at `branch` runs (the down layers before it and the up layers from it on)."""
        count = sum(_down_units(block, j) for block, j in self.down[:branch])
        for layer in range(self.skips - 1 - branch, len(self.up)):
            i, j = self.up[layer]
            block = self.unet.up_blocks[i]
            count += 1 + _has_attention(block)
            if j == len(block.resnets) - 1 and block.upsamplers is not None:
                count += len(block.upsamplers)
        return count

    def full(self, branch: int, sample, timestep, encoder_hidden_states, **kwargs):
        """The whole UNet; returns (prediction, feature entering the up layer that reads skip `branch`)."""
        call, h = self._begin(sample, timestep, encoder_hidden_states, **kwargs)
        h, skips = self._down(call, h, len(self.down))
        h = self._mid(call, h)
        return self._up(call, h, skips, first=0, capture=self.skips - 1 - branch)

    def shallow(self, branch: int, feature, sample, timestep, encoder_hidden_states, **kwargs):
        """Only the shallow branch, with `feature` standing in for everything deeper than skip `branch`."""
        call, h = self._begin(sample, timestep, encoder_hidden_states, **kwargs)
        _, skips = self._down(call, h, branch)
        prediction, _ = self._up(call, feature, skips, first=self.skips - 1 - branch, capture=None)
        return prediction

    def _begin(
        self,
        sample,
        timestep,
        encoder_hidden_states,
        class_labels=None,
        timestep_cond=None,
        attention_mask=None,
        cross_attention_kwargs=None,
        added_cond_kwargs=None,
        down_block_additional_residuals=None,
        mid_block_additional_residual=None,
        down_intrablock_additional_residuals=None,
        encoder_attention_mask=None,
    ):
        unet = self.unet
        controlnet = down_block_additional_residuals is not None and mid_block_additional_residual is not None
        if down_intrablock_additional_residuals is not None or (
            down_block_additional_residuals is not None and not controlnet
        ):
            raise CacheError("deepcache does not support T2I-Adapter residuals")
        if cross_attention_kwargs is not None and cross_attention_kwargs.get("gligen") is not None:
            raise CacheError("deepcache does not support GLIGEN")
        factor = 2**unet.num_upsamplers
        pass_upsample_size = any(dim % factor != 0 for dim in sample.shape[-2:])
        if attention_mask is not None:
            attention_mask = ((1 - attention_mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
        if encoder_attention_mask is not None:
            encoder_attention_mask = ((1 - encoder_attention_mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
        class_emb = unet.get_class_embed(sample=sample, class_labels=class_labels)
        if class_emb is not None:
            emb = (
                torch.cat([emb, class_emb], dim=-1)
                if unet.config.class_embeddings_concat
                else emb + class_emb
            )
        aug_emb = unet.get_aug_embed(
            emb=emb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
        )
        if unet.config.addition_embed_type == "image_hint":
            aug_emb, hint = aug_emb
            sample = torch.cat([sample, hint], dim=1)
        emb = emb + aug_emb if aug_emb is not None else emb
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        text = unet.process_encoder_hidden_states(
            encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
        )
        attention = {
            "attention_mask": attention_mask,
            "encoder_attention_mask": encoder_attention_mask,
            "cross_attention_kwargs": cross_attention_kwargs,
        }
        call = _Call(
            emb=emb,
            text=text,
            attention=attention,
            down_residuals=tuple(down_block_additional_residuals) if controlnet else None,
            mid_residual=mid_block_additional_residual if controlnet else None,
            pass_upsample_size=pass_upsample_size,
        )
        return call, unet.conv_in(sample)

    def _attend(self, call: _Call, attention, h):
        return attention(h, encoder_hidden_states=call.text, return_dict=False, **call.attention)[0]

    def _down(self, call: _Call, h, layers: int):
        """Run the first `layers` down layers; returns the last output and the skips made (conv_in's first)."""
        skips = [h]
        for block, j in self.down[:layers]:
            if j is None:
                for downsampler in block.downsamplers:
                    h = downsampler(h)
            else:
                h = block.resnets[j](h, call.emb)
                if _has_attention(block):
                    h = self._attend(call, block.attentions[j], h)
            skips.append(h)
        if call.down_residuals is not None:
            skips = [skip + extra for skip, extra in zip(skips, call.down_residuals, strict=False)]
        return h, skips

    def _mid(self, call: _Call, h):
        mid = self.unet.mid_block
        if mid is not None:
            if getattr(mid, "has_cross_attention", False):
                h = mid(h, call.emb, encoder_hidden_states=call.text, **call.attention)
            else:
                h = mid(h, call.emb)
        if call.mid_residual is not None:
            h = h + call.mid_residual
        return h

    def _up(self, call: _Call, h, skips, first: int, capture: int | None):
        """Run up layers `first`.. to the end and the output head; returns (prediction, captured feature)."""
        unet, captured = self.unet, None
        for layer in range(first, len(self.up)):
            if layer == capture:
                captured = h
            i, j = self.up[layer]
            block = unet.up_blocks[i]
            read = self.skips - 1 - layer
            skip = skips[read]
            if _freeu(block):
                h, skip = apply_freeu(
                    block.resolution_idx, h, skip, s1=block.s1, s2=block.s2, b1=block.b1, b2=block.b2
                )
            h = block.resnets[j](torch.cat([h, skip], dim=1), call.emb)
            if _has_attention(block):
                h = self._attend(call, block.attentions[j], h)
            if j == len(block.resnets) - 1 and block.upsamplers is not None:
                final = i == len(unet.up_blocks) - 1
                size = skips[read - 1].shape[2:] if call.pass_upsample_size and not final else None
                for upsampler in block.upsamplers:
                    h = upsampler(h, size)
        if unet.conv_norm_out:
            h = unet.conv_act(unet.conv_norm_out(h))
        return unet.conv_out(h), captured


class DeepCacheDenoiser(Denoiser):
    """Runs full steps through the whole UNet (keeping the deep feature) and other steps shallow."""

    def __init__(self, unet: Any, total_steps: int, policy: Any) -> None:
        """`policy`: a DeepCache or AdaptiveCache (anything with `full_steps(total)` and `branch`)."""
        super().__init__(unet, total_steps)
        self.walk = UNetWalk(unet)
        self.walk.check_branch(policy.branch)
        self.full_steps = policy.full_steps(total_steps)
        self.branch = policy.branch
        self.features: dict[tuple, torch.Tensor] = {}
        self._saved = self.walk.total_blocks - self.walk.blocks_run(policy.branch)

    def denoise(self, slot, step_index, sample, timestep, encoder_hidden_states, **kwargs):
        self.total_blocks += self.walk.total_blocks
        feature = self.features.get(slot)
        if step_index in self.full_steps or feature is None:
            prediction, self.features[slot] = self.walk.full(
                self.branch, sample, timestep, encoder_hidden_states, **kwargs
            )
            return prediction
        self.skipped_blocks += self._saved
        return self.walk.shallow(self.branch, feature, sample, timestep, encoder_hidden_states, **kwargs)

    def close(self) -> None:
        super().close()
        self.features.clear()


def _has_attention(block) -> bool:
    return getattr(block, "attentions", None) is not None


def _down_units(block, j: int | None) -> int:
    return len(block.downsamplers) if j is None else 1 + _has_attention(block)


def _freeu(block) -> bool:
    return all(getattr(block, name, None) for name in ("s1", "s2", "b1", "b2"))
