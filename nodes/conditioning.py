"""Text Encode (prompt text -> CONDITIONING through a checkpoint's text encoders) and Size Conditioning (SDXL's
size and crop numbers on a CONDITIONING)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from app.engine.context import NodeError
from app.files import FileProblem
from app.graph import types as T
from app.graph.spec import FileRef, Input, Output, Param, node
from app.runtime import embeddings, lora
from app.runtime import text as prompts
from app.runtime.values import Conditioning
from nodes._diffusion import inference, load, lora_files, report_loras

MAX_PROMPT = 20_000  # characters: about 60 chunks of 75 tokens; a longer text is a paste gone wrong


def _prompt_problems(params: dict[str, Any], _inputs: dict[str, str | None]) -> list[str]:
    length = len(params.get("text", ""))
    if length > MAX_PROMPT:
        return [
            f"the prompt is {length} characters long; at most {MAX_PROMPT} are encoded (is it a paste gone wrong?)"
        ]
    return []


def _embedding_files(params: dict[str, Any]) -> list[FileRef]:
    return [
        FileRef("text", embeddings.KIND, embeddings.candidates(name))
        for name in embeddings.names_in(params.get("text", ""))
    ]


@node(
    "conditioning.text_encode",
    title="Text Encode",
    category="conditioning",
    inputs=[Input("clip", T.CLIP, "Tokenizers + text encoders from Load Checkpoint (or Load LoRA).")],
    outputs=[Output("conditioning", T.CONDITIONING, "Text embeddings for the Sampler.")],
    params=[
        Param(
            "text",
            T.STRING,
            "",
            multiline=True,
            linkable=True,
            description="The prompt. (word:1.3) weights words, (word) = x1.1, [word] = /1.1; longer than 75 "
            "tokens is fine (encoded in 75-token chunks); embedding:NAME uses the textual inversion "
            "NAME from models/embeddings, (embedding:NAME:1.2) weights it.",
        ),
        Param(
            "clip_skip",
            T.INT,
            1,
            min=1,
            max=12,
            description="Which text encoder layer to use: 1 = the family's usual one (SD1.x/SD2: the last; SDXL: "
            "the penultimate), 2 = one earlier (A1111's 'clip skip 2'), and so on.",
        ),
    ],
    reads=_embedding_files,
    validate=_prompt_problems,
)
def text_encode(ctx, clip, text, clip_skip):
    """Encodes a prompt (ComfyUI: CLIPTextEncode) the way AUTOMATIC1111 does: weights are multiplied into the
    token embeddings and each 75-token chunk is rescaled back to its unweighted mean; long prompts become
    several 77-token chunks side by side. SDXL runs both text encoders and adds the pooled embedding. A
    prompt without weights gives exactly what diffusers' pipelines compute. LoRAs on the CLIP apply here."""
    loaded, device = load(ctx, clip.source)
    family = loaded.family
    loras = lora_files(ctx, loaded, clip.patches)
    missing = [s.part for s in family.encoders if s.part not in loaded.modules and not s.optional]
    if missing:
        whole_file = bool(clip.source.config) and not clip.source.parts
        hint = (
            f" ({Path(clip.source.path).name} holds none: load them with Dual / Triple CLIP)"
            if whole_file
            else ""
        )
        raise NodeError(f"this {family.name} CLIP has no {', '.join(missing)}, which the family needs{hint}")
    with inference():
        modules = {s.part: loaded.on(s.part, device) for s in family.encoders if s.part in loaded.modules}
        _check_depth({s.part: modules[s.part] for s in family.encoders if s.kind == "clip"}, clip_skip)
        encoders = [
            (spec, modules.get(spec.part), loaded.tokenizers.get(spec.tokenizer)) for spec in family.encoders
        ]
        vectors = _vectors(ctx, modules, sum(spec.kind == "clip" for spec in family.encoders) == 1)
        denoiser = loaded.modules.get(family.denoiser)
        config = denoiser.config if denoiser is not None else None
        with lora.patched(modules, loras) as applied:
            try:
                embedded, pooled = family.encode(encoders, text, clip_skip, device, vectors, config)
            except (FileProblem, embeddings.EmbeddingProblem, ValueError) as error:
                raise NodeError(str(error)) from None
            key = ("empty_chunk", clip_skip, str(device), clip.patches)
            if key not in loaded.derived:
                empty = family.encode(encoders, "", clip_skip, device, vectors, config)[0]
                loaded.derived[key] = empty[:, : prompts.CHUNK + 2]
    report_loras(ctx, applied)
    conditioning = Conditioning(embedded, clip.family, pooled=pooled, pad=loaded.derived[key])
    return {"conditioning": conditioning}


def _check_depth(modules: dict[str, Any], clip_skip: int) -> None:
    for part, module in modules.items():
        layers = module.config.num_hidden_layers
        if clip_skip >= layers:
            raise NodeError(f"clip_skip {clip_skip} reaches past the {layers} layers of this model's {part}")


def _vectors(ctx, modules: dict[str, Any], only_encoder: bool):
    """The textual-inversion lookup for each encoder: embedding name -> that encoder's vectors."""
    files: dict[str, Any] = {}

    def for_encoder(spec):
        width = modules[spec.part].get_input_embeddings().weight.shape[1]

        def lookup(name: str) -> Any:
            if name not in files:
                files[name] = embeddings.read(embeddings.find(name, ctx.settings.resolver))
            return embeddings.vectors_for(files[name], name, spec, width, only_encoder)

        return lookup

    return for_encoder


@node(
    "conditioning.size",
    title="Size Conditioning (SDXL)",
    category="conditioning",
    inputs=[Input("conditioning", T.CONDITIONING, "A Text Encode output of an SDXL base or refiner model.")],
    outputs=[Output("conditioning", T.CONDITIONING, "The same prompt with these size numbers.")],
    params=[
        Param(
            "width", T.INT, 0, min=0, max=16384, description="Original width told to SDXL (0 = the image's)."
        ),
        Param("height", T.INT, 0, min=0, max=16384, description="Original height (0 = the image's)."),
        Param("crop_left", T.INT, 0, min=0, max=16384, description="Crop left edge, pixels (0 = uncropped)."),
        Param("crop_top", T.INT, 0, min=0, max=16384, description="Crop top edge, pixels (0 = uncropped)."),
        Param("target_width", T.INT, 0, min=0, max=16384, description="Target width (0 = the image's)."),
        Param("target_height", T.INT, 0, min=0, max=16384, description="Target height (0 = the image's)."),
        Param(
            "aesthetic_score",
            T.FLOAT,
            0.0,
            min=0.0,
            max=1000.0,
            step=0.5,
            description="SDXL refiner only: 0 = its default (6.0 on the positive prompt, 2.5 on the negative).",
        ),
    ],
)
def size_conditioning(
    ctx, conditioning, width, height, crop_left, crop_top, target_width, target_height, aesthetic_score
):
    """SDXL's micro-conditioning (ComfyUI: CLIPTextEncodeSDXL's size fields): tells the model the size the
    image originally had, where it was cropped and the size to make. Without this node the Sampler uses the
    latent's size and no crop, as StableDiffusionXLPipeline does; a negative prompt without it takes the
    positive prompt's numbers."""
    size = (height, width, crop_top, crop_left, target_height, target_width)
    score = float(aesthetic_score) if aesthetic_score > 0 else None
    return {"conditioning": dataclasses.replace(conditioning, size=size, aesthetic_score=score)}
