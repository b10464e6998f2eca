"""Stable Diffusion 3 and 3.5 (medium, large, large-turbo): an MMDiT denoiser trained with rectified flow.

Text: CLIP-L and CLIP-G (both with projection) read at the penultimate layer, side by side (768 + 1280),
zero-padded to T5's width and followed by T5-XXL's tokens (256 of them); the pooled embedding is both
CLIPs' projections side by side (2048). T5 may be absent: zeros of the transformer's context width stand
in, as StableDiffusion3Pipeline does. The transformer is called with `pooled_projections` and the timestep
as the scheduler gives it (sigma * 1000); it predicts the flow velocity. Text tokens carry no position, so
a longer prompt's extra 77-token CLIP chunks can sit anywhere in the sequence. Never import Qt here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.runtime.families import sd3_keys
from app.runtime.families.base import CLIP_G_PAD, Family, Setup, TextEncoder, count_blocks
from app.runtime.values import Conditioning

CLIP_L = TextEncoder(
    "text_encoder", "tokenizer", "CLIPTextModelWithProjection", penultimate=True, pooled=True
)
CLIP_G = TextEncoder(
    "text_encoder_2",
    "tokenizer_2",
    "CLIPTextModelWithProjection",
    pad=CLIP_G_PAD,
    penultimate=True,
    pooled=True,
    embedding_key="clip_g",
)
T5 = TextEncoder("text_encoder_3", "tokenizer_3", "T5EncoderModel", kind="t5", max_length=256, optional=True)
CONTEXT_WIDTH = 4096  # T5-XXL's width, the context width of every released SD3 transformer
ORIGINAL_MARKER = "joint_blocks.0.context_block.adaLN_modulation.1.bias"  # Stability's own layout


def calculate_shift(
    image_seq_len: int, base_seq_len: int, max_seq_len: int, base_shift: float, max_shift: float
) -> float:
    """The flow shift `mu` for an image of `image_seq_len` patches, linear between the two anchors
    (the pipelines' `calculate_shift`; Flux's resolution-dependent shift)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * slope + base_shift - slope * base_seq_len


class StableDiffusion3(Family):
    name: ClassVar[str] = "sd3"
    pipeline: ClassVar[str] = "StableDiffusion3Pipeline"
    denoiser: ClassVar[str] = "transformer"
    encoders: ClassVar[tuple[TextEncoder, ...]] = (CLIP_L, CLIP_G, T5)
    flow: ClassVar[bool] = True
    cuda_dtype: ClassVar[str] = "bfloat16"

    @classmethod
    def matches(cls, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        return denoiser_config.get("_class_name") == "SD3Transformer2DModel"

    @classmethod
    def encode(cls, encoders, text, clip_skip, device, vectors, denoiser_config=None):
        import torch

        from app.runtime import text as prompts

        clips = [e for e in encoders if e[0].kind == "clip"]
        spec, t5, tokenizer = next(e for e in encoders if e[0].kind == "t5")
        hidden, pooled = prompts.encode_prompt(clips, text, clip_skip, device, vectors)
        if t5 is not None:
            context = prompts.encode_t5(t5, tokenizer, text, spec.max_length, device)
        else:
            width = denoiser_config.joint_attention_dim if denoiser_config is not None else CONTEXT_WIDTH
            context = torch.zeros(1, spec.max_length, width, device=device, dtype=hidden.dtype)
        hidden = torch.nn.functional.pad(hidden, (0, context.shape[-1] - hidden.shape[-1]))
        return torch.cat([hidden, context.to(hidden.dtype)], dim=1), pooled

    @classmethod
    def model_inputs(
        cls, positive: Conditioning, negative: Conditioning, setup: Setup
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return tuple(
            {"encoder_hidden_states": c.embeddings, "pooled_projections": c.pooled}
            for c in (positive, negative)
        )

    @staticmethod
    def denoiser_kwargs(inputs: dict[str, Any]) -> dict[str, Any]:
        return dict(inputs)

    @staticmethod
    def forward(module: Any, sample: Any, timestep: Any, **kwargs: Any) -> Any:
        from app.runtime.control import add_samples

        t = timestep.expand(sample.shape[0])
        samples = None
        for net, cond, scale in kwargs.pop("controlnets", ()):  # StableDiffusion3ControlNetPipeline's call
            pooled = kwargs["pooled_projections"]
            if getattr(net.config, "force_zeros_for_pooled_projection", False):
                pooled = pooled.new_zeros(pooled.shape)
            text = kwargs["encoder_hidden_states"] if net.config.joint_attention_dim is not None else None
            out = net(
                hidden_states=sample,
                timestep=t,
                encoder_hidden_states=text,
                pooled_projections=pooled,
                controlnet_cond=cond,
                conditioning_scale=scale,
                return_dict=False,
            )[0]
            samples = add_samples(samples, out)
        if samples is not None:
            kwargs["block_controlnet_hidden_states"] = samples
        return module(hidden_states=sample, timestep=t, return_dict=False, **kwargs)[0]

    @classmethod
    def skeleton_for(cls, shapes):
        if ORIGINAL_MARKER in shapes:
            blocks, dual = count_blocks(shapes, "joint_blocks."), any(".x_block.attn2." in k for k in shapes)
        elif (
            "transformer_blocks.0.ff_context.net.0.proj.weight" in shapes and "pos_embed.pos_embed" in shapes
        ):
            blocks, dual = count_blocks(shapes, "transformer_blocks."), any(".attn2." in k for k in shapes)
        else:
            return None
        return "sd3.5-medium" if dual else "sd3.5-large" if blocks == 38 else "sd3-medium"

    @staticmethod
    def to_diffusers(state):
        if ORIGINAL_MARKER not in state:
            return state
        from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

        return convert_sd3_transformer_checkpoint_to_diffusers(dict(state))

    @staticmethod
    def lora_to_peft(tensors, config):
        return sd3_keys.lora_to_peft(tensors, config.num_layers if config is not None else None)

    @staticmethod
    def sizes(shapes):
        width, in_channels, patch, _ = shapes["pos_embed.proj.weight"]
        layers = count_blocks(shapes, "transformer_blocks.")
        qk_norm = "transformer_blocks.0.attn.norm_q.weight" in shapes
        head = shapes["transformer_blocks.0.attn.norm_q.weight"][0] if qk_norm else width // layers
        return {
            "num_layers": layers,
            "in_channels": in_channels,
            "out_channels": shapes["proj_out.weight"][0] // (patch * patch),
            "patch_size": patch,
            "caption_projection_dim": shapes["context_embedder.weight"][0],
            "joint_attention_dim": shapes["context_embedder.weight"][1],
            "pooled_projection_dim": shapes["time_text_embed.text_embedder.linear_1.weight"][1],
            "pos_embed_max_size": round(shapes["pos_embed.pos_embed"][1] ** 0.5),
            "attention_head_dim": head,
            "num_attention_heads": width // head,
            "qk_norm": "rms_norm" if qk_norm else None,
            "dual_attention_layers": tuple(
                i for i in range(layers) if f"transformer_blocks.{i}.attn2.to_q.weight" in shapes
            ),
        }

    @staticmethod
    def patch(config: Any) -> int:
        return config.patch_size

    @classmethod
    def timestep_options(cls, scheduler, steps, latents_shape, config):
        scheduler_config = scheduler.config
        if not scheduler_config.get("use_dynamic_shifting"):
            return {}
        patches = (latents_shape[-2] // config.patch_size) * (latents_shape[-1] // config.patch_size)
        return {"mu": _mu(scheduler_config, patches, max_shift=1.16)}


def _mu(scheduler_config: Any, patches: int, max_shift: float) -> float:
    return calculate_shift(
        patches,
        scheduler_config.get("base_image_seq_len", 256),
        scheduler_config.get("max_image_seq_len", 4096),
        scheduler_config.get("base_shift", 0.5),
        scheduler_config.get("max_shift", max_shift),
    )
