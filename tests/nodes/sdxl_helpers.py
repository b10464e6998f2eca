"""Tiny SDXL models for the SDXL tests: a base and a refiner folder (no tokenizer folders: the shipped CLIP
tokenizers are used, as for a real single file), a single original-layout file of the base with its
skeleton, and header-only ("stripped") files of the full-size SDXL base and refiner for detection."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import torch

from app.runtime import tokenizers
from app.runtime.checkpoints import SHIPPED_CONFIGS
from tests.nodes import diffusion_helpers as h
from tools import make_tiny_random_sdxl as xl
from tools.ldm_layout import open_clip_state, unet_key, vae_key, write_sdxl_single_file

BASE, REFINER, SINGLE, SKELETON = (
    "tiny-xl",
    "tiny-xl-refiner",
    "tiny-xl-single.safetensors",
    "tiny-xl-skeleton",
)


def write_models(folder: Path) -> None:
    """Everything the SDXL tests load, under the model root `folder`."""
    xl.write(folder / BASE, seed=0, clip_vocab=True)
    xl.write(folder / REFINER, seed=3, refiner=True, clip_vocab=True)
    pipe = pipeline(folder / BASE)
    (folder / "checkpoints").mkdir(exist_ok=True)
    write_sdxl_single_file(
        pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, folder / "checkpoints" / SINGLE
    )
    skeleton = folder / "configs" / SKELETON
    for part in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler"):
        shutil.copytree(folder / BASE / part, skeleton / part, ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copy(folder / BASE / "model_index.json", skeleton / "model_index.json")


def pipeline(path: Path, img2img: bool = False):
    """diffusers' own pipeline on a tiny folder, with the shipped tokenizers when the folder has none."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    refiner = path.name == REFINER
    cls = StableDiffusionXLImg2ImgPipeline if img2img or refiner else StableDiffusionXLPipeline
    kwargs = {}
    if not (path / "tokenizer_2").is_dir():
        kwargs["tokenizer_2"] = tokenizers.clip("!")
        if not refiner:
            kwargs["tokenizer"] = tokenizers.clip()
    pipe = cls.from_pretrained(path, local_files_only=True, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def graph(name: str = "sdxl_txt2img", checkpoint: str = BASE, **params):
    """A shipped graph on a tiny SDXL at h.SIZE x h.SIZE (see diffusion_helpers.graph)."""
    g = h.graph(name, **params)
    g.set_param("model", "checkpoint", checkpoint)
    return g


def write_stripped(path: Path, skeleton: str) -> Path:
    """A header-only .safetensors file with the keys and shapes of a full-size original-layout checkpoint
    of the shipped skeleton `skeleton` (no weights: only detection reads it)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = SHIPPED_CONFIGS / skeleton
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        layers = unet.config.layers_per_block
        for key, value in unet.state_dict().items():
            shapes["model.diffusion_model." + unet_key(key, layers).replace(".UPSAMPLE.", ".2.")] = (
                value.shape
            )
        for key, value in vae.state_dict().items():
            shapes["first_stage_model." + vae_key(key, len(vae.config.block_out_channels))] = value.shape
        embedder = 0
        if (folder / "text_encoder").is_dir():
            clip_l = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
            for key, value in clip_l.state_dict().items():
                shapes["conditioner.embedders.0.transformer.text_model." + key] = value.shape
            embedder = 1
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
        for key, value in open_clip_state(clip_g).items():
            shapes[f"conditioner.embedders.{embedder}.model.{key}"] = value.shape
    header, offset = {}, 0
    for key, shape in shapes.items():
        size = 2 * int(torch.Size(shape).numel())
        header[key] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    data = json.dumps(header).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(data)) + data)
    return path
