"""ComfyUI import: every mapped core type in both formats, with widget orders written from ComfyUI's node
definitions (tests/interop/builder.py), and what whole workflows become (links, pass-through settings,
subgraphs, reroutes, primitives, modes, missing links, placeholders, PNGs)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from app.engine.plan import validate
from app.graph import pngmeta, serialize
from app.graph.codes import ProblemCode
from app.interop import comfyui
from app.interop.comfyui.widgets import IMAGE_METHODS, LATENT_METHODS, SAMPLERS, SIGMAS
from app.registry import default_registry
from tests.interop.builder import Flow

REGISTRY = default_registry()

# (ComfyUI type, widgets in the definition's order, our type, our params that must follow)
SINGLE = [
    ("CheckpointLoaderSimple", {"ckpt_name": "sd15.safetensors"}, "model.checkpoint", {"checkpoint": "sd15.safetensors"}),
    ("UNETLoader", {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}, "model.diffusion_model",
     {"unet_name": "flux1-dev.safetensors"}),
    ("DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl.safetensors", "type": "flux",
                        "device": "default"}, "model.dual_clip",
     {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl.safetensors", "type": "flux"}),
    ("TripleCLIPLoader", {"clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors",
                          "clip_name3": "t5xxl.safetensors"}, "model.triple_clip",
     {"clip_name1": "clip_g.safetensors", "clip_name3": "t5xxl.safetensors"}),
    ("VAELoader", {"vae_name": "ae.safetensors"}, "model.vae", {"vae_name": "ae.safetensors"}),
    ("LoraLoader", {"lora_name": "ink.safetensors", "strength_model": 0.8, "strength_clip": 0.6}, "model.lora",
     {"lora_name": "ink.safetensors", "strength_model": 0.8, "strength_clip": 0.6}),
    ("LoraLoaderModelOnly", {"lora_name": "ink.safetensors", "strength_model": 0.7}, "model.lora_model_only",
     {"lora_name": "ink.safetensors", "strength_model": 0.7}),
    ("CLIPTextEncode", {"text": "a red fox"}, "conditioning.text_encode", {"text": "a red fox", "clip_skip": 1}),
    ("CLIPTextEncodeFlux", {"clip_l": "a fox", "t5xxl": "a fox", "guidance": 3.5}, "conditioning.text_encode",
     {"text": "a fox"}),
    ("EmptyLatentImage", {"width": 768, "height": 512, "batch_size": 2}, "latent.empty",
     {"width": 768, "height": 512, "batch": 2}),
    ("EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}, "latent.empty",
     {"width": 1024, "height": 1024, "batch": 1}),
    ("VAEEncode", {}, "latent.vae_encode", {}),
    ("VAEDecode", {}, "latent.vae_decode", {"tiled": False}),
    ("VAEDecodeTiled", {"tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8},
     "latent.vae_decode", {"tiled": True}),
    ("ControlNetLoader", {"control_net_name": "canny.safetensors"}, "control.load", {"controlnet": "canny.safetensors"}),
    ("ControlNetApply", {"strength": 0.9}, "control.apply", {"strength": 0.9, "start": 0.0, "end": 1.0}),
    ("ControlNetApplyAdvanced", {"strength": 0.8, "start_percent": 0.1, "end_percent": 0.7}, "control.apply",
     {"strength": 0.8, "start": 0.1, "end": 0.7}),
    ("Canny", {"low_threshold": 0.4, "high_threshold": 0.8}, "control.canny", {"low": 102, "high": 204}),
    ("LoadImage", {"image": "fox.png", "upload": "image"}, "image.load", {"path": "fox.png"}),
    ("SaveImage", {"filename_prefix": "foxes/ComfyUI"}, "image.save", {"prefix": "ComfyUI", "folder": "foxes"}),
    ("PreviewImage", {}, "image.preview", {}),
    ("ImageScale", {"upscale_method": "bicubic", "width": 640, "height": 0, "crop": "center"}, "image.scale",
     {"method": "bicubic", "width": 640, "height": 0, "fit": "crop"}),
    ("LatentUpscale", {"upscale_method": "nearest-exact", "width": 1024, "height": 768, "crop": "disabled"},
     "latent.upscale", {"method": "nearest-exact", "width": 1024, "height": 768, "fit": "stretch"}),
    ("LatentUpscaleBy", {"upscale_method": "area", "scale_by": 1.5}, "latent.upscale_by",
     {"method": "area", "scale_by": 1.5}),
    ("UpscaleModelLoader", {"model_name": "4x-UltraSharp.pth"}, "model.upscale", {"model_name": "4x-UltraSharp.pth"}),
    ("ImageUpscaleWithModel", {}, "image.upscale_with_model", {"tile": 512, "overlap": 32}),
    ("CLIPLoader", {"clip_name": "clip_l.safetensors", "type": "stable_diffusion", "device": "default"},
     "model.clip", {"clip_name": "clip_l.safetensors", "type": "stable_diffusion", "config": "auto"}),
]  # fmt: skip


def _import(data):
    return comfyui.import_workflow(json.loads(json.dumps(data)))


@pytest.mark.parametrize("fmt", ["ui", "api"])
@pytest.mark.parametrize("case", SINGLE, ids=[c[0] for c in SINGLE])
def test_each_core_type_maps_with_its_values(case, fmt):
    comfy, widgets, ours, params = case
    flow = Flow()
    flow.add(comfy, widgets)
    graph, report = _import(getattr(flow, fmt)())
    node = graph.nodes[f"{comfy.lower()}_1"]
    assert node.type == ours
    assert {k: node.params[k] for k in params} == params
    assert report.mapped == {comfy: 1} and not report.placeholders
    spec = REGISTRY.get(ours)
    for name, value in node.params.items():  # every value is one the node accepts
        param = spec.param(name)
        assert param is not None, name
        assert param.choices is None or value in param.choices, (name, value)
    assert graph.meta["comfyui"]["ids"][node.id] == "1"


def test_the_name_tables_point_at_what_our_nodes_offer():
    schedulers = REGISTRY.get("sampling.scheduler")
    assert {ours for ours, _ in SAMPLERS.values()} <= set(schedulers.param("scheduler").choices)
    assert {ours for ours, _ in SIGMAS.values()} <= set(schedulers.param("sigmas").choices)
    assert set(IMAGE_METHODS) <= set(REGISTRY.get("image.scale").param("method").choices)
    assert set(LATENT_METHODS) <= set(REGISTRY.get("latent.upscale").param("method").choices)


def _sd15(fmt: str, sampler="dpmpp_2m", scheduler="karras", skip=-2):
    flow = Flow()
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": "sd15.safetensors"})
    layer = flow.add("CLIPSetLastLayer", {"stop_at_clip_layer": skip}, {"clip": (ckpt, 1)})
    pos = flow.add("CLIPTextEncode", {"text": "a red fox"}, {"clip": (layer, 0)})
    neg = flow.add("CLIPTextEncode", {"text": "blurry"}, {"clip": (layer, 0)})
    empty = flow.add("EmptyLatentImage", {"width": 512, "height": 512, "batch_size": 1})
    ks = flow.add(
        "KSampler",
        {"seed": 42, "control_after_generate": "fixed", "steps": 12, "cfg": 6.5, "sampler_name": sampler,
         "scheduler": scheduler, "denoise": 1.0},
        {"model": (ckpt, 0), "positive": (pos, 0), "negative": (neg, 0), "latent_image": (empty, 0)},
    )  # fmt: skip
    decode = flow.add("VAEDecode", {}, {"samples": (ks, 0), "vae": (ckpt, 2)})
    flow.add("SaveImage", {"filename_prefix": "ComfyUI"}, {"images": (decode, 0)})
    return getattr(flow, fmt)()


def _wire(graph, node, port):
    edge = graph.input_edge(node, port)
    return (edge.src, edge.src_port) if edge else None


@pytest.mark.parametrize("fmt", ["ui", "api"])
def test_ksampler_becomes_scheduler_guidance_and_sampler_with_its_links(fmt):
    graph, report = _import(_sd15(fmt))
    schedule, guidance, sampler = (graph.nodes[f"ksampler_6{s}"] for s in ("_schedule", "_guidance", ""))
    assert {k: schedule.params[k] for k in ("scheduler", "sigmas", "steps", "denoise")} == {
        "scheduler": "dpmpp_2m", "sigmas": "karras", "steps": 12, "denoise": 1.0}  # fmt: skip
    assert guidance.params["method"] == "cfg" and guidance.params["scale"] == 6.5
    assert sampler.params["seed"] == 42
    ckpt = "checkpointloadersimple_1"
    assert _wire(graph, sampler.id, "model") == (ckpt, "model") and _wire(graph, guidance.id, "model") == (
        ckpt,
        "model",
    )
    assert _wire(graph, sampler.id, "positive") == ("cliptextencode_3", "conditioning")
    assert _wire(graph, sampler.id, "negative") == ("cliptextencode_4", "conditioning")
    assert _wire(graph, sampler.id, "latent") == ("emptylatentimage_5", "latent")
    assert _wire(graph, sampler.id, "schedule") == (schedule.id, "schedule")
    assert _wire(graph, "vaedecode_7", "latent") == (sampler.id, "latent")
    assert _wire(graph, "saveimage_8", "image") == ("vaedecode_7", "image")
    # CLIPSetLastLayer -2 is gone: both prompts read the checkpoint's CLIP with clip skip 2
    assert "clipsetlastlayer_2" not in graph.nodes
    for text in ("cliptextencode_3", "cliptextencode_4"):
        assert _wire(graph, text, "clip") == (ckpt, "clip") and graph.nodes[text].params["clip_skip"] == 2
    assert _wire(graph, "emptylatentimage_5", "vae") == (ckpt, "vae")  # our empty latent needs the VAE
    assert report.approximated == [] and report.models == [("checkpoints", "sd15.safetensors")]
    problems = validate(graph, REGISTRY)
    assert {p.code for p in problems} <= {ProblemCode.FILE_NOT_FOUND}  # only the checkpoint is not here


def test_inexact_sampler_and_scheduler_names_are_reported():
    graph, report = _import(_sd15("api", sampler="dpmpp_3m_sde", scheduler="sgm_uniform"))
    schedule = graph.nodes["ksampler_6_schedule"]
    assert (schedule.params["scheduler"], schedule.params["sigmas"]) == ("dpmpp_2m_sde", "simple")
    assert any("dpmpp_3m_sde runs as dpmpp_2m_sde" in line for line in report.approximated)
    assert any("sgm_uniform" in line for line in report.approximated)
    assert all(line.startswith("KSampler 6:") for line in report.approximated)


def test_ksampler_advanced_start_step_becomes_denoise():
    flow = Flow()
    flow.add(
        "KSamplerAdvanced",
        {"add_noise": "enable", "noise_seed": 7, "control_after_generate": "randomize", "steps": 20, "cfg": 5.0,
         "sampler_name": "euler", "scheduler": "simple", "start_at_step": 5, "end_at_step": 10000,
         "return_with_leftover_noise": "disable"},
    )  # fmt: skip
    for data in (flow.ui(), flow.api()):
        graph, report = _import(data)
        schedule = graph.nodes["ksampleradvanced_1_schedule"]
        assert schedule.params["denoise"] == 0.75 and schedule.params["steps"] == 20
        assert graph.nodes["ksampleradvanced_1"].params["seed"] == 7 and report.approximated == []


def _flux(fmt: str, zero_negative=False):
    flow = Flow()
    unet = flow.add("UNETLoader", {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"})
    clip = flow.add("DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl.safetensors",
                                       "type": "flux", "device": "default"})  # fmt: skip
    vae = flow.add("VAELoader", {"vae_name": "ae.safetensors"})
    text = flow.add("CLIPTextEncode", {"text": "a fox"}, {"clip": (clip, 0)})
    guided = flow.add("FluxGuidance", {"guidance": 2.5}, {"conditioning": (text, 0)})
    model = flow.add("ModelSamplingFlux", {"max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 1024},
                     {"model": (unet, 0)})  # fmt: skip
    noise = flow.add("RandomNoise", {"noise_seed": 99, "control_after_generate": "fixed"})
    guider = flow.add("BasicGuider", {}, {"model": (model, 0), "conditioning": (guided, 0)})
    chooser = flow.add("KSamplerSelect", {"sampler_name": "euler"})
    sigmas = flow.add(
        "BasicScheduler", {"scheduler": "simple", "steps": 8, "denoise": 1.0}, {"model": (model, 0)}
    )
    empty = flow.add("EmptySD3LatentImage", {"width": 1024, "height": 768, "batch_size": 1})
    custom = flow.add(
        "SamplerCustomAdvanced", {},
        {"noise": (noise, 0), "guider": (guider, 0), "sampler": (chooser, 0), "sigmas": (sigmas, 0),
         "latent_image": (empty, 0)},
    )  # fmt: skip
    decode = flow.add("VAEDecode", {}, {"samples": (custom, 0), "vae": (vae, 0)})
    flow.add("SaveImage", {"filename_prefix": "flux"}, {"images": (decode, 0)})
    return getattr(flow, fmt)()


@pytest.mark.parametrize("fmt", ["ui", "api"])
def test_sampler_custom_advanced_gathers_its_parts(fmt):
    graph, report = _import(_flux(fmt))
    sampler, schedule, guidance = (
        graph.nodes[f"samplercustomadvanced_12{s}"] for s in ("", "_schedule", "_guidance")
    )
    assert sampler.params["seed"] == 99
    assert (schedule.params["scheduler"], schedule.params["steps"], schedule.params["sigmas"]) == (
        "euler",
        8,
        "simple",
    )
    assert guidance.params["scale"] == 2.5  # FluxGuidance is the distilled guidance
    assert _wire(graph, sampler.id, "model") == ("unetloader_1", "model")  # through ModelSamplingFlux
    assert _wire(graph, guidance.id, "model") == ("unetloader_1", "model")
    assert _wire(graph, sampler.id, "positive") == (
        "cliptextencode_4",
        "conditioning",
    )  # through FluxGuidance
    assert _wire(graph, sampler.id, "negative") is None
    assert _wire(graph, "emptysd3latentimage_11", "vae") == ("vaeloader_3", "vae")
    assert not [n for n in graph if n.type.startswith(comfyui.PLACEHOLDER)]
    for part in ("randomnoise_7", "basicguider_8", "ksamplerselect_9", "basicscheduler_10", "fluxguidance_5"):
        assert part not in graph.nodes
    assert report.approximated == []
    assert sorted(report.models) == [("diffusion_models", "flux1-dev.safetensors"), ("text_encoders", "clip_l.safetensors"),
                                     ("text_encoders", "t5xxl.safetensors"), ("vae", "ae.safetensors")]  # fmt: skip


def test_sd3_shift_zeroed_negative_and_combined_prompts():
    flow = Flow()
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": "sd3.5_medium.safetensors"})
    shifted = flow.add("ModelSamplingSD3", {"shift": 3.0}, {"model": (ckpt, 0)})
    a = flow.add("CLIPTextEncode", {"text": "a fox"}, {"clip": (ckpt, 1)})
    b = flow.add("CLIPTextEncode", {"text": "in snow"}, {"clip": (ckpt, 1)})
    both = flow.add("ConditioningCombine", {}, {"conditioning_1": (a, 0), "conditioning_2": (b, 0)})
    zero = flow.add("ConditioningZeroOut", {}, {"conditioning": (a, 0)})
    latent = flow.add("EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1})
    flow.add(
        "KSampler",
        {"seed": 1, "control_after_generate": "fixed", "steps": 28, "cfg": 4.5, "sampler_name": "euler",
         "scheduler": "simple", "denoise": 1.0},
        {"model": (shifted, 0), "positive": (both, 0), "negative": (zero, 0), "latent_image": (latent, 0)},
    )  # fmt: skip
    graph, report = _import(flow.api())
    assert graph.nodes["ksampler_8_schedule"].params["shift"] == 3.0
    assert _wire(graph, "ksampler_8", "model") == ("checkpointloadersimple_1", "model")
    assert _wire(graph, "ksampler_8", "positive") == ("cliptextencode_3", "conditioning")
    assert _wire(graph, "ksampler_8", "negative") is None
    assert _wire(graph, "ksampler_8", "latent") == ("emptysd3latentimage_7", "latent")
    said = " | ".join(report.approximated)
    assert "ConditioningCombine 5" in said and "ConditioningZeroOut 6" in said


@pytest.mark.parametrize("fmt", ["ui", "api"])
def test_set_latent_noise_mask_takes_load_image_mask_inverted_and_exports_back(fmt):
    flow = Flow()
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": "v1-5.safetensors"})
    picture = flow.add("LoadImage", {"image": "fox.png", "upload": "image"})
    encoded = flow.add("VAEEncode", {}, {"pixels": (picture, 0), "vae": (ckpt, 2)})
    masked = flow.add("SetLatentNoiseMask", {}, {"samples": (encoded, 0), "mask": (picture, 1)})
    graph, report = _import(flow.ui() if fmt == "ui" else flow.api())
    node = graph.nodes[f"setlatentnoisemask_{masked}"]
    assert node.type == "latent.noise_mask"
    assert node.params["invert"] is True  # ComfyUI's MASK is 1 where transparent, our mask is the alpha
    assert _wire(graph, node.id, "latent") == (f"vaeencode_{encoded}", "latent")
    assert _wire(graph, node.id, "mask") == (f"loadimage_{picture}", "mask")
    assert not [line for line in report.approximated if "SetLatentNoiseMask" in line]
    prompt, _ = comfyui.export_api(graph, REGISTRY)
    (theirs,) = [p for p in prompt.values() if p["class_type"] == "SetLatentNoiseMask"]
    (loader,) = [k for k, p in prompt.items() if p["class_type"] == "LoadImage"]
    assert theirs["inputs"]["mask"] == [loader, 1]


@pytest.mark.parametrize("fmt", ["ui", "api"])
def test_vae_encode_for_inpaint_keeps_its_grow_and_exports_back(fmt):
    flow = Flow()
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": "v1-5-inpainting.safetensors"})
    picture = flow.add("LoadImage", {"image": "fox.png", "upload": "image"})
    encode = flow.add("VAEEncodeForInpaint", {"grow_mask_by": 8},
                      {"pixels": (picture, 0), "vae": (ckpt, 2), "mask": (picture, 1)})  # fmt: skip
    graph, _ = _import(flow.ui() if fmt == "ui" else flow.api())
    node = graph.nodes[f"vaeencodeforinpaint_{encode}"]
    assert node.type == "latent.vae_encode_inpaint"
    assert (node.params["grow"], node.params["invert"]) == (8, True)
    assert _wire(graph, node.id, "image") == (f"loadimage_{picture}", "image")
    assert _wire(graph, node.id, "vae") == (f"checkpointloadersimple_{ckpt}", "vae")
    prompt, _ = comfyui.export_api(graph, REGISTRY)
    (theirs,) = [p for p in prompt.values() if p["class_type"] == "VAEEncodeForInpaint"]
    assert theirs["inputs"]["grow_mask_by"] == 8 and theirs["inputs"]["mask"][1] == 1


def test_subgraphs_are_expanded_with_widget_inputs_and_object_links():
    inner_nodes = [
        {"id": 1, "type": "CLIPTextEncode", "pos": [0, 0], "size": [300, 100], "mode": 0,
         "inputs": [{"name": "clip", "type": "CLIP", "link": 1}, {"name": "text", "type": "STRING", "link": 2,
                                                                  "widget": {"name": "text"}}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [3]}], "widgets_values": ["stale"]},
    ]  # fmt: skip
    definition = {
        "id": "5f1c-prompt",
        "name": "Prompt",
        "inputNode": {"id": -10},
        "outputNode": {"id": -20},
        "inputs": [{"name": "clip", "type": "CLIP"}, {"name": "text", "type": "STRING"}],
        "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING"}],
        "widgets": [],
        "nodes": inner_nodes,
        "links": [
            {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "CLIP"},
            {"id": 2, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1, "type": "STRING"},
            {
                "id": 3,
                "origin_id": 1,
                "origin_slot": 0,
                "target_id": -20,
                "target_slot": 0,
                "type": "CONDITIONING",
            },
        ],
    }
    workflow = {
        "version": 1,
        "nodes": [
            {"id": 4, "type": "CheckpointLoaderSimple", "pos": [0, 0], "mode": 0, "inputs": [],
             "outputs": [{"name": "MODEL", "links": [10]}, {"name": "CLIP", "links": [11]}], "widgets_values": ["a.safetensors"]},
            {"id": 9, "type": "5f1c-prompt", "pos": [300, 0], "mode": 0,
             "inputs": [{"name": "clip", "type": "CLIP", "link": 11},
                        {"name": "text", "type": "STRING", "link": None, "widget": {"name": "text"}}],
             "outputs": [{"name": "CONDITIONING", "links": [12]}], "widgets_values": ["a fox in a subgraph"]},
            {"id": 3, "type": "KSampler", "pos": [700, 0], "mode": 0,
             "inputs": [{"name": "model", "link": 10}, {"name": "positive", "link": 12}],
             "outputs": [], "widgets_values": [5, "fixed", 10, 7.0, "euler", "normal", 1.0]},
        ],
        "links": [
            {"id": 10, "origin_id": 4, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "MODEL"},
            {"id": 11, "origin_id": 4, "origin_slot": 1, "target_id": 9, "target_slot": 0, "type": "CLIP"},
            {"id": 12, "origin_id": 9, "origin_slot": 0, "target_id": 3, "target_slot": 1, "type": "CONDITIONING"},
        ],
        "definitions": {"subgraphs": [definition]},
    }  # fmt: skip
    graph, report = _import(workflow)
    text = graph.nodes["cliptextencode_9_1"]  # ComfyUI's execution id 9:1
    assert text.params["text"] == "a fox in a subgraph"  # the instance's widget value, not the inner one
    assert _wire(graph, text.id, "clip") == ("checkpointloadersimple_4", "clip")
    assert _wire(graph, "ksampler_3", "positive") == (text.id, "conditioning")
    assert graph.meta["comfyui"]["ids"][text.id] == "9:1" and graph.meta["comfyui"]["format"] == "ui 1"
    assert not report.placeholders


def test_reroutes_and_primitives_dissolve_and_modes_carry_over():
    flow = Flow()
    ckpt = flow.add("CheckpointLoaderSimple", {"ckpt_name": "a.safetensors"})
    r1 = flow.add("Reroute", {}, {"": (ckpt, 1)})
    r2 = flow.add("Reroute", {}, {"": (r1, 0)})
    seed = flow.add("PrimitiveNode", {"value": 1234, "control_after_generate": "fixed"})
    text = flow.add("CLIPTextEncode", {"text": "x"}, {"clip": (r2, 0)}, mode=4)
    flow.add(
        "KSampler",
        {"seed": 0, "control_after_generate": "fixed", "steps": 4, "cfg": 7.0, "sampler_name": "euler",
         "scheduler": "normal", "denoise": 1.0},
        {"model": (ckpt, 0), "positive": (text, 0), "seed": (seed, 0)},
        mode=2,
    )  # fmt: skip
    graph, _ = _import(flow.ui())
    assert _wire(graph, "cliptextencode_5", "clip") == ("checkpointloadersimple_1", "clip")
    assert not [n for n in graph if "reroute" in n.id or "primitive" in n.id]
    assert graph.nodes["ksampler_6"].params["seed"] == 1234  # the primitive's value
    assert graph.nodes["cliptextencode_5"].mode == "bypass" and graph.nodes["ksampler_6"].mode == "mute"
    api, _ = _import(
        {"1": {"class_type": "Reroute", "inputs": {"": ["2", 0]}},
         "2": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
         "3": {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0]}}}
    )  # fmt: skip
    assert _wire(api, "vaedecode_3", "vae") == ("vaeloader_2", "vae")


def test_links_to_missing_nodes_leave_the_input_open():
    ui = _sd15("ui")
    ui["nodes"] = [n for n in ui["nodes"] if n["type"] != "EmptyLatentImage"]  # its link stays in the table
    ui["links"].append([99, 77, 0, 6, 3, "LATENT"])  # and a link from a node that never existed
    graph, _ = _import(ui)
    assert _wire(graph, "ksampler_6", "latent") is None
    api = _sd15("api")
    del api["5"]
    api["6"]["inputs"]["model"] = ["404", 0]
    graph, _ = _import(api)
    assert _wire(graph, "ksampler_6", "latent") is None and _wire(graph, "ksampler_6", "model") is None
    problems = validate(graph, REGISTRY)
    assert any(p.node == "ksampler_6" and p.code == ProblemCode.REQUIRED_INPUT_MISSING for p in problems)


def test_custom_nodes_become_placeholders_that_keep_everything():
    api = _sd15("api")
    api["20"] = {
        "class_type": "PathchSageAttentionKJ",
        "inputs": {"model": ["1", 0], "sage_attention": "auto"},
    }
    api["6"]["inputs"]["model"] = ["20", 0]
    graph, report = _import(api)
    kept = graph.nodes["pathchsageattentionkj_20"]
    assert kept.type == "comfyui.PathchSageAttentionKJ"
    assert kept.params["inputs"] == {"sage_attention": "auto"} and kept.params["comfyui_id"] == "20"
    assert _wire(graph, kept.id, "model") == ("checkpointloadersimple_1", "model")
    assert _wire(graph, "ksampler_6", "model") == (kept.id, "out0")
    assert report.placeholders == ["PathchSageAttentionKJ (20)"]
    messages = [p.message for p in validate(graph, REGISTRY) if p.node == kept.id]
    assert any("ComfyUI node PathchSageAttentionKJ (custom) is not available" in m for m in messages)
    core = Flow()
    core.add("CLIPLoader", {"clip_name": "t5xxl.safetensors", "type": "mochi", "device": "default"})
    graph, report = _import(core.ui())
    assert graph.nodes["cliploader_1"].params["widgets_values"] == ["t5xxl.safetensors", "mochi", "default"]
    assert report.mapped == {} and report.placeholders == ["CLIPLoader (1)"]
    assert "core node not in Nodeloom yet" in validate(graph, REGISTRY)[0].message


def test_groups_notes_titles_and_positions_reach_the_layout():
    ui = _sd15("ui")
    ui["nodes"][0]["title"] = "My checkpoint"
    ui["nodes"][0]["bgcolor"] = "#335533"
    ui["groups"] = [{"title": "Prompts", "bounding": [10, 20, 400, 300], "color": "#3f789e"}]
    ui["nodes"].append({"id": 30, "type": "Note", "pos": [5, 6], "size": [200, 80], "mode": 0,
                        "widgets_values": ["remember the seed"]})  # fmt: skip
    graph, _ = _import(ui)
    node = graph.nodes["checkpointloadersimple_1"]
    assert node.title == "My checkpoint"
    assert graph.layout["positions"][node.id] == [100, 50] and graph.layout["sizes"][node.id] == [300, 120]
    assert graph.layout["colours"][node.id] == "#335533"
    frames = graph.layout["frames"]
    assert frames["group_1"] == {"title": "Prompts", "colour": "#3f789e", "rect": [10.0, 20.0, 400.0, 300.0]}
    assert frames["note_30"]["note"] == "remember the seed"


def test_comfyui_pngs_and_graph_files_load_through_one_door(tmp_path):
    picture = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    workflow = pngmeta.add_text(
        picture, {"workflow": json.dumps(_sd15("ui")), "prompt": json.dumps(_sd15("api"))}
    )
    (tmp_path / "comfy.png").write_bytes(workflow)
    graph, report = comfyui.load_graph(tmp_path / "comfy.png", REGISTRY)
    assert report is not None and graph.meta["comfyui"]["format"] == "ui 0.4"  # the UI chunk is preferred
    prompt_only = pngmeta.add_text(picture, {"prompt": json.dumps(_sd15("api"))})
    (tmp_path / "api.png").write_bytes(prompt_only)
    graph, report = comfyui.load_graph(tmp_path / "api.png", REGISTRY)
    assert graph.meta["comfyui"]["format"] == "api" and "ksampler_6" in graph.nodes
    serialize.save(graph, tmp_path / "ours.json")
    again, report = comfyui.load_graph(tmp_path / "ours.json", REGISTRY)
    assert report is None and set(again.nodes) == set(graph.nodes)
    (tmp_path / "bad.json").write_text('{"nodes": [{"type": "KSampler"}], "links": []}')
    with pytest.raises(
        serialize.GraphFileError, match="bad.json: a ComfyUI workflow this import cannot read"
    ):
        comfyui.load_graph(tmp_path / "bad.json", REGISTRY)
