"""ComfyUI's core node types as the importer and exporter need them: each type's widget names in the order
its UI-format `widgets_values` holds them (frontend-only widgets included: `control_after_generate` after
a seed, LoadImage's `upload`), and its output slots. Read from ComfyUI's node definitions (nodes.py,
comfy_extras/*) and its frontend; a type missing here is imported as a placeholder.

Sampler and scheduler names: ComfyUI's `sampler_name` x `scheduler` against ours (app/runtime/schedulers):
an exact match where diffusers has the same method, else the nearest, reported as an approximation.
Pure data: never import torch or Qt here.
"""

from __future__ import annotations

# type -> widget names in widgets_values order
WIDGETS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "CLIPLoader": ("clip_name", "type", "device"),
    "DualCLIPLoader": ("clip_name1", "clip_name2", "type", "device"),
    "TripleCLIPLoader": ("clip_name1", "clip_name2", "clip_name3"),
    "VAELoader": ("vae_name",),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance"),
    "CLIPTextEncodeSDXL": (
        "width",
        "height",
        "crop_w",
        "crop_h",
        "target_width",
        "target_height",
        "text_g",
        "text_l",
    ),  # fmt: skip
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "ConditioningZeroOut": (),
    "ConditioningCombine": (),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "VAEEncode": (),
    "VAEDecode": (),
    "VAEDecodeTiled": ("tile_size", "overlap", "temporal_size", "temporal_overlap"),
    "KSampler": ("seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),  # fmt: skip
    "SamplerCustomAdvanced": (),
    "RandomNoise": ("noise_seed", "control_after_generate"),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "BasicGuider": (),
    "CFGGuider": ("cfg",),
    "FluxGuidance": ("guidance",),
    "ModelSamplingSD3": ("shift",),
    "ModelSamplingAuraFlow": ("shift",),
    "ModelSamplingFlux": ("max_shift", "base_shift", "width", "height"),
    "ControlNetLoader": ("control_net_name",),
    "ControlNetApply": ("strength",),
    "ControlNetApplyAdvanced": ("strength", "start_percent", "end_percent"),
    "Canny": ("low_threshold", "high_threshold"),
    "LoadImage": ("image", "upload"),
    "SaveImage": ("filename_prefix",),
    "PreviewImage": (),
    "ImageScale": ("upscale_method", "width", "height", "crop"),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "LatentUpscaleBy": ("upscale_method", "scale_by"),
    "SetLatentNoiseMask": (),
    "VAEEncodeForInpaint": ("grow_mask_by",),
    "UpscaleModelLoader": ("model_name",),
    "ImageUpscaleWithModel": (),
    "Note": ("text",),
    "MarkdownNote": ("text",),
}

# type -> output slot names (index = ComfyUI's output slot)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("MODEL", "CLIP", "VAE"),
    "UNETLoader": ("MODEL",),
    "CLIPLoader": ("CLIP",),
    "DualCLIPLoader": ("CLIP",),
    "TripleCLIPLoader": ("CLIP",),
    "VAELoader": ("VAE",),
    "LoraLoader": ("MODEL", "CLIP"),
    "LoraLoaderModelOnly": ("MODEL",),
    "CLIPTextEncode": ("CONDITIONING",),
    "CLIPTextEncodeFlux": ("CONDITIONING",),
    "CLIPTextEncodeSDXL": ("CONDITIONING",),
    "CLIPSetLastLayer": ("CLIP",),
    "ConditioningZeroOut": ("CONDITIONING",),
    "ConditioningCombine": ("CONDITIONING",),
    "EmptyLatentImage": ("LATENT",),
    "EmptySD3LatentImage": ("LATENT",),
    "VAEEncode": ("LATENT",),
    "VAEDecode": ("IMAGE",),
    "VAEDecodeTiled": ("IMAGE",),
    "KSampler": ("LATENT",),
    "KSamplerAdvanced": ("LATENT",),
    "SamplerCustomAdvanced": ("output", "denoised_output"),
    "RandomNoise": ("NOISE",),
    "KSamplerSelect": ("SAMPLER",),
    "BasicScheduler": ("SIGMAS",),
    "BasicGuider": ("GUIDER",),
    "CFGGuider": ("GUIDER",),
    "FluxGuidance": ("CONDITIONING",),
    "ModelSamplingSD3": ("MODEL",),
    "ModelSamplingAuraFlow": ("MODEL",),
    "ModelSamplingFlux": ("MODEL",),
    "ControlNetLoader": ("CONTROL_NET",),
    "ControlNetApply": ("CONDITIONING",),
    "ControlNetApplyAdvanced": ("positive", "negative"),
    "Canny": ("IMAGE",),
    "LoadImage": ("IMAGE", "MASK"),
    "SaveImage": (),
    "PreviewImage": (),
    "ImageScale": ("IMAGE",),
    "LatentUpscale": ("LATENT",),
    "LatentUpscaleBy": ("LATENT",),
    "SetLatentNoiseMask": ("LATENT",),
    "VAEEncodeForInpaint": ("LATENT",),
    "UpscaleModelLoader": ("UPSCALE_MODEL",),
    "ImageUpscaleWithModel": ("IMAGE",),
}

# upscale_method values both sides have (ComfyUI's latent "bislerp" is not here: it runs as bilinear)
IMAGE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
LATENT_METHODS = IMAGE_METHODS[:4]

# ComfyUI sampler_name -> (our scheduler, exact?)
SAMPLERS: dict[str, tuple[str, bool]] = {
    "euler": ("euler", True),
    "euler_ancestral": ("euler_a", True),
    "heun": ("heun", True),
    "dpmpp_2m": ("dpmpp_2m", True),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", True),
    "dpmpp_2m_sde_gpu": ("dpmpp_2m_sde", True),
    "ddim": ("ddim", True),
    "ddpm": ("ddpm", True),
    "lcm": ("lcm", True),
    "uni_pc": ("unipc", True),
    "uni_pc_bh2": ("unipc", False),
    "deis": ("deis", True),
    "euler_cfg_pp": ("euler", False),
    "euler_ancestral_cfg_pp": ("euler_a", False),
    "heunpp2": ("heun", False),
    "dpm_2": ("heun", False),
    "dpm_2_ancestral": ("euler_a", False),
    "lms": ("euler", False),
    "dpm_fast": ("dpmpp_2m", False),
    "dpm_adaptive": ("dpmpp_2m", False),
    "dpmpp_2s_ancestral": ("euler_a", False),
    "dpmpp_2s_ancestral_cfg_pp": ("euler_a", False),
    "dpmpp_sde": ("dpmpp_2m_sde", False),
    "dpmpp_sde_gpu": ("dpmpp_2m_sde", False),
    "dpmpp_2m_cfg_pp": ("dpmpp_2m", False),
    "dpmpp_3m_sde": ("dpmpp_2m_sde", False),
    "dpmpp_3m_sde_gpu": ("dpmpp_2m_sde", False),
    "ipndm": ("dpmpp_2m", False),
    "ipndm_v": ("dpmpp_2m", False),
    "res_multistep": ("dpmpp_2m", False),
    "gradient_estimation": ("euler", False),
}

# ComfyUI scheduler -> (our sigma spacing, exact?)
SIGMAS: dict[str, tuple[str, bool]] = {
    "normal": ("simple", False),  # evenly spaced timesteps; ours is the scheduler's own spacing
    "simple": ("simple", True),
    "karras": ("karras", True),
    "exponential": ("exponential", True),
    "beta": ("beta", True),
    "sgm_uniform": ("simple", False),
    "ddim_uniform": ("simple", False),
    "linear_quadratic": ("simple", False),
    "kl_optimal": ("simple", False),
}

# our scheduler -> ComfyUI sampler_name, our spacing -> ComfyUI scheduler (export)
SAMPLER_NAMES = {
    ours: name for name, (ours, exact) in SAMPLERS.items() if exact and name != "dpmpp_2m_sde_gpu"
}
SCHEDULER_NAMES = {"simple": "normal", "karras": "karras", "exponential": "exponential", "beta": "beta"}
