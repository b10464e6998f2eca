"""Export handlers for the nodes that are not one-to-one with a ComfyUI type (app/interop/comfyui/export.py):
Sampler (with its Scheduler and Guidance) -> KSampler, Text Encode -> CLIPTextEncode (+ CLIPSetLastLayer),
Empty Latent, VAE Decode, Save Image, Apply ControlNet, Canny. Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

from typing import Any

from app.interop.comfyui.export import SAMPLER_NAMES, SCHEDULER_NAMES, Exporter, handles

FLOW_LOADERS = ("model.diffusion_model", "model.dual_clip", "model.triple_clip")


@handles("sampling.sampler")
def _sampler(ex: Exporter, node: Any) -> None:
    graph = ex.graph
    schedule_edge, guider_edge = graph.input_edge(node.id, "schedule"), graph.input_edge(node.id, "guider")
    schedule = graph.nodes[schedule_edge.src] if schedule_edge else None
    guidance = graph.nodes[guider_edge.src] if guider_edge else None
    why = _not_a_ksampler(schedule, guidance)
    if why:
        ex.report.skipped.append(f"{node.id}: {why}")
        return
    sp, gp = schedule.params, guidance.params
    sigmas = "karras" if sp.get("karras") else sp.get("sigmas", "simple")
    their = ex.their_id(node.id)
    flux = _is_flux(graph, node.id)
    scale = float(gp.get("scale", 7.5))
    inputs = {
        "seed": int(node.params.get("seed", 0)),
        "steps": int(sp.get("steps", 20)),
        "cfg": 1.0 if flux else scale,
        "sampler_name": SAMPLER_NAMES[sp.get("scheduler", "euler")],
        "scheduler": SCHEDULER_NAMES[sigmas],
        "denoise": float(sp.get("denoise", 1.0)),
    }
    ex.emit(their, "KSampler", inputs, node.title)
    model_their, model_port = their, "model"
    if float(sp.get("shift", 0.0)) > 0:  # the flow shift sits in front of the model
        shift = ex.their_id(node.id, "shift")
        ex.emit(shift, "ModelSamplingSD3", {"shift": float(sp["shift"])})
        ex.link(shift, "model", node.id, "model")
        ex.prompt[their]["inputs"]["model"] = [shift, 0]
        model_their = ""
    if model_their:
        ex.link(model_their, model_port, node.id, "model")
    if flux:
        guide = ex.their_id(node.id, "flux_guidance")
        ex.emit(guide, "FluxGuidance", {"guidance": scale})
        ex.link(guide, "conditioning", node.id, "positive")
        ex.prompt[their]["inputs"]["positive"] = [guide, 0]
        ex.report.notes.append(f"{node.id}: a Flux model: its guidance {scale} goes to FluxGuidance, cfg 1")
    else:
        ex.link(their, "positive", node.id, "positive")
    ex.link(their, "negative", node.id, "negative")
    ex.link(their, "latent_image", node.id, "latent")
    ex.outputs[(node.id, "latent")] = [their, 0]
    if graph.input_edge(node.id, "negative") is None and flux:  # ComfyUI's KSampler needs one
        zero = ex.their_id(node.id, "zero")
        ex.emit(zero, "ConditioningZeroOut", {})
        ex.prompt[zero]["inputs"]["conditioning"] = ex.prompt[their]["inputs"]["positive"]
        ex.prompt[their]["inputs"]["negative"] = [zero, 0]


def _not_a_ksampler(schedule: Any, guidance: Any) -> str | None:
    if schedule is None or schedule.type != "sampling.scheduler":
        return "its schedule does not come from a Scheduler node"
    if guidance is None or guidance.type != "sampling.guidance":
        return "its guider does not come from a Guidance node"
    if guidance.params.get("method", "cfg") != "cfg":
        return f"guidance {guidance.params['method']} has no KSampler equivalent (only cfg)"
    if schedule.params.get("timesteps"):
        return "custom timesteps have no KSampler equivalent"
    if schedule.params.get("scheduler", "euler") not in SAMPLER_NAMES:
        return f"scheduler {schedule.params['scheduler']} has no ComfyUI sampler name"
    return None


def _is_flux(graph: Any, node_id: str) -> bool:
    """Whether the Sampler's model is a Flux model, by the name of the file or skeleton it loads."""
    seen = set()
    current = graph.input_edge(node_id, "model")
    while current is not None and current.src not in seen:
        seen.add(current.src)
        loader = graph.nodes[current.src]
        names = " ".join(
            str(v) for k, v in loader.params.items() if k in ("checkpoint", "unet_name", "config")
        )
        if loader.type in ("model.checkpoint", "model.diffusion_model"):
            return "flux" in names.lower()
        current = graph.input_edge(loader.id, "model")
    return False


@handles("conditioning.text_encode")
def _text(ex: Exporter, node: Any) -> None:
    their = ex.their_id(node.id)
    ex.emit(their, "CLIPTextEncode", {"text": str(node.params.get("text", ""))}, node.title)
    skip = int(node.params.get("clip_skip", 1))
    if skip > 1:
        layer = ex.their_id(node.id, "clip_skip")
        ex.emit(layer, "CLIPSetLastLayer", {"stop_at_clip_layer": -skip})
        ex.link(layer, "clip", node.id, "clip")
        ex.prompt[their]["inputs"]["clip"] = [layer, 0]
    else:
        ex.link(their, "clip", node.id, "clip")
    ex.outputs[(node.id, "conditioning")] = [their, 0]


@handles("latent.empty")
def _empty(ex: Exporter, node: Any) -> None:
    their = ex.their_id(node.id)
    flow = any(n.type in FLOW_LOADERS for n in ex.graph)
    inputs = {
        k: int(node.params.get(p, 512))
        for k, p in (("width", "width"), ("height", "height"), ("batch_size", "batch"))
    }
    ex.emit(their, "EmptySD3LatentImage" if flow else "EmptyLatentImage", inputs, node.title)
    ex.outputs[(node.id, "latent")] = [their, 0]


@handles("latent.vae_decode")
def _decode(ex: Exporter, node: Any) -> None:
    their = ex.their_id(node.id)
    tiled = bool(node.params.get("tiled"))
    extra = {"tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8} if tiled else {}
    ex.emit(their, "VAEDecodeTiled" if tiled else "VAEDecode", extra, node.title)
    ex.link(their, "samples", node.id, "latent")
    ex.link(their, "vae", node.id, "vae")
    ex.outputs[(node.id, "image")] = [their, 0]


@handles("image.save")
def _save(ex: Exporter, node: Any) -> None:
    their = ex.their_id(node.id)
    folder, prefix = str(node.params.get("folder", "")), str(node.params.get("prefix", "nodeloom"))
    ex.emit(their, "SaveImage", {"filename_prefix": f"{folder}/{prefix}" if folder else prefix}, node.title)
    ex.link(their, "images", node.id, "image")


@handles("control.apply")
def _apply(ex: Exporter, node: Any) -> None:
    their = ex.their_id(node.id)
    params = node.params
    if (float(params.get("start", 0.0)), float(params.get("end", 1.0))) != (0.0, 1.0) or params.get(
        "guess_mode"
    ):
        ex.report.notes.append(
            f"{node.id}: its start/end window and guess mode are dropped (ControlNetApply)"
        )
    if ex.graph.input_edge(node.id, "vae") is not None:
        ex.report.notes.append(
            f"{node.id}: its vae link is dropped (ControlNetApply; an SD3 ControlNet needs it)"
        )
    ex.emit(their, "ControlNetApply", {"strength": float(params.get("strength", 1.0))}, node.title)
    for name, port in (("conditioning", "conditioning"), ("control_net", "control_net"), ("image", "image")):
        ex.link(their, name, node.id, port)
    ex.outputs[(node.id, "conditioning")] = [their, 0]


@handles("control.canny")
def _canny(ex: Exporter, node: Any) -> None:
    their = ex.their_id(node.id)
    low, high = int(node.params.get("low", 100)), int(node.params.get("high", 200))
    ex.emit(
        their,
        "Canny",
        {"low_threshold": round(min(low, 252) / 255, 2), "high_threshold": round(min(high, 252) / 255, 2)},
        node.title,
    )
    ex.link(their, "image", node.id, "image")
    ex.outputs[(node.id, "image")] = [their, 0]


@handles("image.scale")
@handles("latent.upscale")
def _scale(ex: Exporter, node: Any) -> None:
    image = node.type == "image.scale"
    params = node.params
    crop = {"stretch": "disabled", "crop": "center"}.get(str(params.get("fit", "stretch")))
    if crop is None:
        ex.report.skipped.append(f"{node.id}: fit pad has no ComfyUI equivalent (crop is disabled or center)")
        return
    their = ex.their_id(node.id)
    values = {"upscale_method": str(params.get("method", "bilinear")), "width": int(params.get("width", 512)),
              "height": int(params.get("height", 512)), "crop": crop}  # fmt: skip
    ex.emit(their, "ImageScale" if image else "LatentUpscale", values, node.title)
    port = "image" if image else "latent"
    ex.link(their, "image" if image else "samples", node.id, port)
    ex.outputs[(node.id, port)] = [their, 0]


@handles("latent.noise_mask", "latent.vae_encode_inpaint")
def _noise_mask(ex: Exporter, node: Any) -> None:
    graph, params = ex.graph, node.params
    mask_edge, image_edge = graph.input_edge(node.id, "mask"), graph.input_edge(node.id, "mask_image")
    encodes = node.type == "latent.vae_encode_inpaint"
    if int(params.get("feather", 0)) or (int(params.get("grow", 0)) and not encodes):
        ex.report.notes.append(f"{node.id}: grow and feather are dropped (ComfyUI takes the mask as it is)")
    their = ex.their_id(node.id)
    if encodes:
        ex.emit(their, "VAEEncodeForInpaint", {"grow_mask_by": int(params.get("grow", 6))}, node.title)
        ex.link(their, "pixels", node.id, "image")
        ex.link(their, "vae", node.id, "vae")
    else:
        ex.emit(their, "SetLatentNoiseMask", {}, node.title)
        ex.link(their, "samples", node.id, "latent")
    ex.outputs[(node.id, "latent")] = [their, 0]
    from_alpha = mask_edge is not None and graph.nodes[mask_edge.src].type == "image.load"
    if from_alpha and params.get("invert"):  # ComfyUI's LoadImage MASK is already 1 where transparent
        ex.link(their, "mask", node.id, "mask")
    elif image_edge is not None and not params.get("invert"):
        to_mask = ex.their_id(node.id, "mask")
        ex.emit(to_mask, "ImageToMask", {"channel": "red"})
        ex.link(to_mask, "image", node.id, "mask_image")
        ex.prompt[their]["inputs"]["mask"] = [to_mask, 0]
    else:
        ex.report.skipped.append(
            f"{node.id}.mask: this mask and invert setting has no ComfyUI core equivalent"
        )


@handles("model.clip")
def _clip_loader(ex: Exporter, node: Any) -> None:
    their = ex.their_id(node.id)
    inputs = {
        "clip_name": str(node.params.get("clip_name", "")),
        "type": "stable_diffusion",
        "device": "default",
    }
    ex.emit(their, "CLIPLoader", inputs, node.title)
    ex.outputs[(node.id, "clip")] = [their, 0]
