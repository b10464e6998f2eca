"""How each core ComfyUI node type becomes Nodeloom nodes (the importer's table, CONVERTERS).

A converter gets the importer and the ComfyUI node; it adds our nodes with the node's values, says which of
their ports the ComfyUI inputs and output slots are, and reports what it could not carry over exactly.
Loaders, text, latents, ControlNet, images and resizing map one to one here; the samplers are
convert_sampling.py.
Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.interop.comfyui.importer import Importer
from app.interop.comfyui.widgets import IMAGE_METHODS, LATENT_METHODS, WIDGETS
from app.interop.comfyui.workflow import CNode

Converter = Callable[[Importer, CNode], None]
CONVERTERS: dict[str, Converter] = {}
PASS_THROUGH = (
    "ModelSamplingSD3",
    "ModelSamplingAuraFlow",
    "ModelSamplingFlux",
    "FluxGuidance",
    "CLIPSetLastLayer",
)
CONFIG = {"config": "auto"}


def converts(*types: str) -> Callable[[Converter], Converter]:
    def register(function: Converter) -> Converter:
        for name in types:
            CONVERTERS[name] = function
        return function

    return register


def _one(
    imp: Importer,
    node: CNode,
    type_id: str,
    params: dict[str, Any],
    inputs: dict[str, str],
    outputs: tuple[str, ...],
) -> str:
    """One Nodeloom node: ComfyUI input name -> our port, output slots in order -> our ports."""
    our = imp.add(node, type_id, params)
    for theirs, port in inputs.items():
        imp.input(node, theirs, our, port)
    for slot, port in enumerate(outputs):
        imp.output(node, slot, our, port)
    return our


@converts("CheckpointLoaderSimple")
def _checkpoint(imp: Importer, node: CNode) -> None:
    name = imp.value(node, "ckpt_name", "")
    imp.report.models.append(("checkpoints", name))
    _one(imp, node, "model.checkpoint", {"checkpoint": name, **CONFIG}, {}, ("model", "clip", "vae"))


@converts("UNETLoader")
def _unet(imp: Importer, node: CNode) -> None:
    name = imp.value(node, "unet_name", "")
    imp.report.models.append(("diffusion_models", name))
    if imp.value(node, "weight_dtype", "default") != "default":
        imp.approx(
            node,
            f"weight_dtype {imp.value(node, 'weight_dtype')} ignored: weights load in the run's precision",
        )
    _one(imp, node, "model.diffusion_model", {"unet_name": name, **CONFIG}, {}, ("model",))


@converts("DualCLIPLoader", "TripleCLIPLoader")
def _clips(imp: Importer, node: CNode) -> None:
    names = [imp.value(node, f"clip_name{i}", "") for i in (1, 2, 3) if f"clip_name{i}" in _order(node)]
    imp.report.models += [("text_encoders", name) for name in names]
    params: dict[str, Any] = {f"clip_name{i + 1}": name for i, name in enumerate(names)}
    if node.type == "DualCLIPLoader":
        kind = str(imp.value(node, "type", "flux"))
        if kind not in ("flux", "sd3"):
            imp.placeholder(node)  # sdxl, hunyuan, ... text encoders from split files: not here yet
            return
        params["type"] = kind
    _one(
        imp,
        node,
        f"model.{'dual' if len(names) == 2 else 'triple'}_clip",
        {**params, **CONFIG},
        {},
        ("clip",),
    )


def _order(node: CNode) -> tuple[str, ...]:
    return WIDGETS.get(node.type, ())


@converts("VAELoader")
def _vae(imp: Importer, node: CNode) -> None:
    name = imp.value(node, "vae_name", "")
    imp.report.models.append(("vae", name))
    _one(imp, node, "model.vae", {"vae_name": name, **CONFIG}, {}, ("vae",))


@converts("LoraLoader")
def _lora(imp: Importer, node: CNode) -> None:
    name = imp.value(node, "lora_name", "")
    imp.report.models.append(("loras", name))
    params = {
        "lora_name": name,
        "strength_model": float(imp.value(node, "strength_model", 1.0)),
        "strength_clip": float(imp.value(node, "strength_clip", 1.0)),
    }
    _one(imp, node, "model.lora", params, {"model": "model", "clip": "clip"}, ("model", "clip"))


@converts("LoraLoaderModelOnly")
def _lora_model(imp: Importer, node: CNode) -> None:
    name = imp.value(node, "lora_name", "")
    imp.report.models.append(("loras", name))
    params = {"lora_name": name, "strength_model": float(imp.value(node, "strength_model", 1.0))}
    _one(imp, node, "model.lora_model_only", params, {"model": "model"}, ("model",))


@converts("CLIPTextEncode")
def _text(imp: Importer, node: CNode) -> None:
    params = {"text": str(imp.value(node, "text", "")), "clip_skip": 1}
    _one(imp, node, "conditioning.text_encode", params, {"clip": "clip"}, ("conditioning",))


@converts("CLIPTextEncodeFlux")
def _text_flux(imp: Importer, node: CNode) -> None:
    clip_l, t5 = str(imp.value(node, "clip_l", "")), str(imp.value(node, "t5xxl", ""))
    if clip_l and t5 and clip_l != t5:
        imp.approx(node, "separate CLIP-L and T5 prompts: both encoders read the T5 prompt")
    our = imp.add(node, "conditioning.text_encode", {"text": t5 or clip_l, "clip_skip": 1})
    imp.input(node, "clip", our, "clip")
    imp.output(node, 0, our, "conditioning")
    imp.sets[(our, "conditioning")] = {"guidance": float(imp.value(node, "guidance", 3.5))}


@converts("CLIPTextEncodeSDXL")
def _text_sdxl(imp: Importer, node: CNode) -> None:
    text_g, text_l = str(imp.value(node, "text_g", "")), str(imp.value(node, "text_l", ""))
    if text_l and text_l != text_g:
        imp.approx(node, "separate CLIP-G and CLIP-L prompts: both encoders read text_g")
    text = imp.add(
        node, "conditioning.text_encode", {"text": text_g or text_l, "clip_skip": 1}, offset=(0, -120)
    )
    sizes = {
        "width": int(imp.value(node, "width", 0)),
        "height": int(imp.value(node, "height", 0)),
        "crop_left": int(imp.value(node, "crop_w", 0)),
        "crop_top": int(imp.value(node, "crop_h", 0)),
        "target_width": int(imp.value(node, "target_width", 0)),
        "target_height": int(imp.value(node, "target_height", 0)),
        "aesthetic_score": 0.0,
    }
    size = imp.add(node, "conditioning.size", sizes, suffix="size")
    imp.input(node, "clip", text, "clip")
    imp.edges.append((text, "conditioning", size, "conditioning"))
    imp.output(node, 0, size, "conditioning")


@converts(*PASS_THROUGH)
def _pass(imp: Importer, node: CNode) -> None:
    if node.type == "CLIPSetLastLayer":
        imp.alias(node, 0, "clip", clip_skip=max(1, -int(imp.value(node, "stop_at_clip_layer", -1))))
    elif node.type == "FluxGuidance":
        imp.alias(node, 0, "conditioning", guidance=float(imp.value(node, "guidance", 3.5)))
    elif node.type == "ModelSamplingFlux":
        if (float(imp.value(node, "max_shift", 1.15)), float(imp.value(node, "base_shift", 0.5))) != (
            1.15,
            0.5,
        ):
            imp.approx(
                node, "max_shift / base_shift other than 1.15 / 0.5: the checkpoint's dynamic shift is used"
            )
        imp.alias(node, 0, "model")
    else:
        imp.alias(node, 0, "model", shift=float(imp.value(node, "shift", 3.0)))


@converts("ConditioningZeroOut")
def _zero(imp: Importer, node: CNode) -> None:
    imp.approx(node, "no zeroed conditioning here: the Sampler it feeds gets no negative prompt (none is needed "
               "for Flux, or CFG 1); with CFG above 1 connect an empty Text Encode")  # fmt: skip
    imp.outputs[(node.id, 0)] = None  # nothing: the input it feeds stays unconnected


@converts("ConditioningCombine")
def _combine(imp: Importer, node: CNode) -> None:
    imp.approx(node, "conditioning_2 is dropped: combining prompts is not available here")
    imp.alias(node, 0, "conditioning_1")


@converts("EmptyLatentImage", "EmptySD3LatentImage")
def _empty(imp: Importer, node: CNode) -> None:
    params = {
        "width": int(imp.value(node, "width", 512)),
        "height": int(imp.value(node, "height", 512)),
        "batch": int(imp.value(node, "batch_size", 1)),
    }
    our = _one(imp, node, "latent.empty", params, {}, ("latent",))
    imp.needs_vae.append(our)  # ComfyUI's empty latent knows no VAE; ours is linked to the graph's


@converts("VAEEncode")
def _encode(imp: Importer, node: CNode) -> None:
    _one(imp, node, "latent.vae_encode", {}, {"pixels": "image", "vae": "vae"}, ("latent",))


@converts("VAEDecode", "VAEDecodeTiled")
def _decode(imp: Importer, node: CNode) -> None:
    tiled = node.type == "VAEDecodeTiled"
    if tiled:
        imp.approx(node, "tile size and overlap are diffusers' own (tiled = on)")
    _one(imp, node, "latent.vae_decode", {"tiled": tiled}, {"samples": "latent", "vae": "vae"}, ("image",))


@converts("ControlNetLoader")
def _controlnet(imp: Importer, node: CNode) -> None:
    name = imp.value(node, "control_net_name", "")
    imp.report.models.append(("controlnet", name))
    _one(imp, node, "control.load", {"controlnet": name, **CONFIG}, {}, ("control_net",))


@converts("ControlNetApply", "ControlNetApplyAdvanced")
def _apply(imp: Importer, node: CNode) -> None:
    advanced = node.type == "ControlNetApplyAdvanced"
    params = {
        "strength": float(imp.value(node, "strength", 1.0)),
        "start": float(imp.value(node, "start_percent", 0.0)) if advanced else 0.0,
        "end": float(imp.value(node, "end_percent", 1.0)) if advanced else 1.0,
        "guess_mode": False,
    }
    inputs = {
        "positive" if advanced else "conditioning": "conditioning",
        "control_net": "control_net",
        "image": "image",
        "vae": "vae",  # SD3 ControlNets encode the picture with it; others ignore it
    }
    _one(imp, node, "control.apply", params, inputs, ("conditioning",))
    if advanced:  # our hints ride on the positive prompt; the negative passes through
        imp.alias(node, 1, "negative")


@converts("Canny")
def _canny(imp: Importer, node: CNode) -> None:
    low, high = float(imp.value(node, "low_threshold", 0.4)), float(imp.value(node, "high_threshold", 0.8))
    params = {"low": round(low * 255), "high": round(high * 255)}  # ComfyUI's 0..1 thresholds, ours 0..255
    imp.approx(
        node,
        f"thresholds {low}/{high} become OpenCV's {params['low']}/{params['high']} (edges differ a little)",
    )
    _one(imp, node, "control.canny", params, {"image": "image"}, ("image",))


@converts("LoadImage")
def _load(imp: Importer, node: CNode) -> None:
    _one(imp, node, "image.load", {"path": str(imp.value(node, "image", ""))}, {}, ("image", "mask"))


@converts("SaveImage")
def _save(imp: Importer, node: CNode) -> None:
    prefix = str(imp.value(node, "filename_prefix", "ComfyUI"))
    folder, _, name = prefix.rpartition("/")  # ComfyUI's "folder/name" prefixes: our folder param
    params = {"prefix": name.replace("\\", "_") or "ComfyUI", "folder": folder.replace("..", "_")}
    _one(imp, node, "image.save", params, {"images": "image"}, ())
    imp.alias(node, 0, "images")  # newer ComfyUI passes the pictures on


@converts("PreviewImage")
def _preview(imp: Importer, node: CNode) -> None:
    _one(imp, node, "image.preview", {}, {"images": "image"}, ())
    imp.alias(node, 0, "images")


@converts("Note", "MarkdownNote")
def _note(imp: Importer, node: CNode) -> None:
    text = str(imp.value(node, "text", ""))
    x, y = node.pos or (0.0, 0.0)
    w, h = node.size or (300.0, 120.0)
    title = (node.title or text.splitlines()[0] if text else node.type)[:80]
    imp.graph.set_layout_item(
        "frames",
        f"note_{node.id.replace(':', '_')}",
        {"title": title, "colour": "#6d6d3c", "rect": [x, y, w, h], "note": text},
    )


CROP = {"disabled": "stretch", "center": "crop"}


def _scale_method(imp: Importer, node: CNode, allowed: tuple[str, ...]) -> str:
    method = str(imp.value(node, "upscale_method", "nearest-exact"))
    if method not in allowed:
        imp.approx(node, f"upscale_method {method} runs as bilinear")
        return "bilinear"
    return method


@converts("ImageScale", "LatentUpscale")
def _scale(imp: Importer, node: CNode) -> None:
    image = node.type == "ImageScale"
    params = {
        "method": _scale_method(imp, node, IMAGE_METHODS if image else LATENT_METHODS),
        "width": int(imp.value(node, "width", 512)),
        "height": int(imp.value(node, "height", 512)),
        "fit": CROP.get(str(imp.value(node, "crop", "disabled")), "stretch"),
    }
    port = "image" if image else "latent"
    _one(
        imp,
        node,
        "image.scale" if image else "latent.upscale",
        params,
        {port if image else "samples": port},
        (port,),
    )


@converts("LatentUpscaleBy")
def _scale_by(imp: Importer, node: CNode) -> None:
    params = {
        "method": _scale_method(imp, node, LATENT_METHODS),
        "scale_by": float(imp.value(node, "scale_by", 1.5)),
    }
    _one(imp, node, "latent.upscale_by", params, {"samples": "latent"}, ("latent",))


@converts("SetLatentNoiseMask", "VAEEncodeForInpaint")
def _noise_mask(imp: Importer, node: CNode) -> None:
    source = node.links.get("mask")
    feeding = imp.workflow.nodes.get(source[0]) if source else None
    # ComfyUI's LoadImage MASK is 1 where the picture is transparent; our Load Image's mask is its alpha
    invert = feeding is not None and feeding.type == "LoadImage" and source[1] == 1
    if node.type == "SetLatentNoiseMask":
        params = {"invert": invert, "grow": 0, "feather": 0}
        _one(imp, node, "latent.noise_mask", params, {"samples": "latent", "mask": "mask"}, ("latent",))
        return
    params = {"invert": invert, "grow": int(imp.value(node, "grow_mask_by", 6)), "feather": 0}
    inputs = {"pixels": "image", "vae": "vae", "mask": "mask"}
    _one(imp, node, "latent.vae_encode_inpaint", params, inputs, ("latent",))


@converts("UpscaleModelLoader")
def _upscale_loader(imp: Importer, node: CNode) -> None:
    name = str(imp.value(node, "model_name", ""))
    imp.report.models.append(("upscale_models", name))
    _one(imp, node, "model.upscale", {"model_name": name}, {}, ("upscale_model",))


@converts("ImageUpscaleWithModel")
def _upscale_with_model(imp: Importer, node: CNode) -> None:
    inputs = {"upscale_model": "upscale_model", "image": "image"}
    _one(imp, node, "image.upscale_with_model", {"tile": 512, "overlap": 32}, inputs, ("image",))


@converts("CLIPLoader")
def _clip_loader(imp: Importer, node: CNode) -> None:
    """One text encoder file: SD1.x/SD2's (type stable_diffusion) maps to Load CLIP; the other types (text
    encoders of models Nodeloom does not run from one file) stay placeholders."""
    if str(imp.value(node, "type", "stable_diffusion")) != "stable_diffusion":
        imp.placeholder(node)
        return
    name = str(imp.value(node, "clip_name", ""))
    imp.report.models.append(("text_encoders", name))
    params = {"clip_name": name, "type": "stable_diffusion", "config": "auto"}
    _one(imp, node, "model.clip", params, {}, ("clip",))
