"""Flux.1 dev and schnell: a rectified-flow transformer (double- and single-stream blocks with RoPE).

Text: T5-XXL's tokens (512 for dev, 256 for schnell in the pipelines; we read 512 for both, see below)
are the context; CLIP-L's pooled output is the vector conditioning. Latents have 16 channels and are fed as
2x2 patches: `forward` packs (B, 16, h, w) into (B, h/2 * w/2, 64) with a (row, column) position id per
patch and zero ids for the text, calls the transformer with the timestep as a fraction (sigma), and
unpacks the prediction, so the sampler and every scheduler keep working on ordinary latents (their
updates are per element, so packing commutes with them). Dev was distilled from CFG: the Guidance node's
scale goes into the transformer as `guidance` and one pass per step is made, as FluxPipeline does; a
`true_cfg` above 1 adds a real negative pass. The schedule is FluxPipeline's: sigmas evenly from 1 to
1/steps, shifted by `mu`, which grows with the image's patch count (dynamic shift). Never import Qt here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.runtime.families import flux_keys
from app.runtime.families.base import Family, Setup, TextEncoder, count_blocks
from app.runtime.families.sd3 import _mu
from app.runtime.values import Conditioning

CLIP_L = TextEncoder("text_encoder", "tokenizer", "CLIPTextModel", pooled=True)
T5 = TextEncoder("text_encoder_2", "tokenizer_2", "T5EncoderModel", kind="t5", max_length=512)


class Flux(Family):
    name: ClassVar[str] = "flux"
    pipeline: ClassVar[str] = "FluxPipeline"
    denoiser: ClassVar[str] = "transformer"
    encoders: ClassVar[tuple[TextEncoder, ...]] = (CLIP_L, T5)
    flow: ClassVar[bool] = True
    cuda_dtype: ClassVar[str] = "bfloat16"
    guidance_methods: ClassVar[tuple[str, ...] | None] = ("cfg",)

    @classmethod
    def matches(cls, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        return denoiser_config.get("_class_name") == "FluxTransformer2DModel"

    @classmethod
    def encode(cls, encoders, text, clip_skip, device, vectors, denoiser_config=None):
        from app.runtime import text as prompts

        (clip_spec, clip, clip_tokenizer), (t5_spec, t5, t5_tokenizer) = encoders
        chunks = prompts.tokenize(clip_tokenizer, text, vectors(clip_spec))[:1]
        _, pooled = prompts.encode_chunks(clip, chunks, clip_skip, device)
        return prompts.encode_t5(t5, t5_tokenizer, text, t5_spec.max_length, device), pooled

    @classmethod
    def model_inputs(
        cls, positive: Conditioning, negative: Conditioning, setup: Setup
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        branches = []
        for conditioning in (positive, negative):
            inputs = {
                "encoder_hidden_states": conditioning.embeddings,
                "pooled_projections": conditioning.pooled,
            }
            if setup.config.guidance_embeds:
                inputs["guidance"] = torch.full([1], float(setup.guidance_scale), dtype=torch.float32)
            branches.append(inputs)
        return branches[0], branches[1]

    @staticmethod
    def denoiser_kwargs(inputs: dict[str, Any]) -> dict[str, Any]:
        return dict(inputs)

    @staticmethod
    def forward(module: Any, sample: Any, timestep: Any, **kwargs: Any) -> Any:
        import torch

        from app.runtime.control import add_samples

        batch, channels, height, width = sample.shape
        packed = pack(sample)
        rows, columns = torch.meshgrid(
            torch.arange(height // 2, device=sample.device),
            torch.arange(width // 2, device=sample.device),
            indexing="ij",
        )
        img_ids = torch.stack([torch.zeros_like(rows), rows, columns], dim=-1).reshape(-1, 3)
        context = kwargs["encoder_hidden_states"]
        txt_ids = torch.zeros(context.shape[1], 3, device=sample.device)
        guidance = kwargs.pop("guidance", None)
        guidance = guidance.float() if guidance is not None else None
        t = timestep.expand(batch).to(sample.dtype) / 1000
        ids = {"txt_ids": txt_ids.to(sample.dtype), "img_ids": img_ids.to(sample.dtype)}
        double, single = None, None
        for net, cond, scale in kwargs.pop(
            "controlnets", ()
        ):  # FluxControlNetPipeline's call (InstantX kind)
            blocks, singles = net(
                hidden_states=packed,
                controlnet_cond=pack(cond),
                conditioning_scale=scale,
                timestep=t,
                guidance=guidance if net.config.guidance_embeds else None,
                pooled_projections=kwargs["pooled_projections"],
                encoder_hidden_states=context,
                return_dict=False,
                **ids,
            )
            double, single = add_samples(double, blocks), add_samples(single, singles)
        if double is not None or single is not None:
            kwargs.update(controlnet_block_samples=double, controlnet_single_block_samples=single)
        prediction = module(
            hidden_states=packed, timestep=t, guidance=guidance, return_dict=False, **ids, **kwargs
        )[0]
        return unpack(prediction, channels, height, width)

    @classmethod
    def skeleton_for(cls, shapes):
        if flux_keys.is_bfl(shapes):
            guidance = "guidance_in.in_layer.weight" in shapes
        elif "single_transformer_blocks.0.attn.norm_k.weight" in shapes:
            guidance = "time_text_embed.guidance_embedder.linear_1.weight" in shapes
        else:
            return None
        return "flux-dev" if guidance else "flux-schnell"

    @staticmethod
    def to_diffusers(state):
        return flux_keys.to_diffusers(state) if flux_keys.is_bfl(state) else state

    @staticmethod
    def lora_to_peft(tensors, config):
        width = config.num_attention_heads * config.attention_head_dim if config is not None else None
        return flux_keys.lora_to_peft(tensors, width)

    @staticmethod
    def sizes(shapes):
        width, in_channels = shapes["x_embedder.weight"]
        head = shapes["transformer_blocks.0.attn.norm_q.weight"][0]
        return {
            "num_layers": count_blocks(shapes, "transformer_blocks."),
            "num_single_layers": count_blocks(shapes, "single_transformer_blocks."),
            "in_channels": in_channels,
            "out_channels": shapes["proj_out.weight"][0],
            "joint_attention_dim": shapes["context_embedder.weight"][1],
            "pooled_projection_dim": shapes["time_text_embed.text_embedder.linear_1.weight"][1],
            "attention_head_dim": head,
            "num_attention_heads": width // head,
            "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in shapes,
        }

    @staticmethod
    def patch(config: Any) -> int:
        return 2

    @classmethod
    def timestep_options(cls, scheduler, steps, latents_shape, config):
        import numpy as np

        options: dict[str, Any] = {}
        if scheduler.config.get(
            "use_dynamic_shifting"
        ):  # FluxPipeline passes mu always; the solvers refuse it
            patches = (latents_shape[-2] // 2) * (latents_shape[-1] // 2)
            options["mu"] = _mu(scheduler.config, patches, max_shift=1.15)
        if not scheduler.config.get("use_flow_sigmas"):
            options["sigmas"] = np.linspace(1.0, 1 / steps, steps)
        return options

    @classmethod
    def guidance(cls, guider: Any, prediction_type: str) -> Any:
        from app.runtime.guidance import ClassicCfg

        true_cfg = float(guider.options.get("true_cfg", 1.0))
        return ClassicCfg(true_cfg, float(guider.options.get("rescale", 0.0)))


def pack(latents: Any) -> Any:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C): each 2x2 patch becomes one token (FluxPipeline._pack_latents)."""
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // 2) * (width // 2), channels * 4)


def unpack(tokens: Any, channels: int, height: int, width: int) -> Any:
    """The inverse of `pack`."""
    batch = tokens.shape[0]
    patches = tokens.view(batch, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, channels, height, width)
