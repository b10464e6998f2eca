"""Load LoRA: every key format gives the same weights, the graph equals diffusers' load_lora_weights +
set_adapters, the base model is restored bit for bit and never reloaded, strengths re-run only what they
feed, and keys that fit nothing are reported."""

from __future__ import annotations

import pytest
import torch

from app.runtime import lora
from app.runtime.models import manager
from app.runtime.schedulers import make_scheduler
from app.runtime.values import Schedule
from tests.nodes import diffusion_helpers as h
from tests.nodes import lora_helpers as L
from tests.nodes import sdxl_helpers as xl
from tools import make_tiny_random_sdxl

TOLERANCE = 1e-4
PROMPT = "a red circle on a blue background"
XL = "tiny-xl-lora"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    with h.model_root(folder) as sd_path:
        make_tiny_random_sdxl.write(folder / XL, seed=0)
        sd = h.pipeline(sd_path)
        xl_pipe = xl.pipeline(folder / XL)
        pairs = {
            "sd": L.make_pairs(sd.unet, {"text_encoder": sd.text_encoder}, seed=1),
            "sd2": L.make_pairs(sd.unet, {"text_encoder": sd.text_encoder}, seed=2),
            "xl": L.make_pairs(
                xl_pipe.unet,
                {"text_encoder": xl_pipe.text_encoder, "text_encoder_2": xl_pipe.text_encoder_2},
                3,
            ),
        }
        loras = folder / "loras"
        L.save(L.kohya(pairs["sd"]), loras / "sd-kohya.safetensors")
        L.save(L.kohya(pairs["sd2"]), loras / "sd-second.safetensors")
        L.save(
            L.kohya(pairs["xl"], xl_pipe.unet.config.layers_per_block, sdxl=True),
            loras / "xl-kohya.safetensors",
        )
        yield folder, sd_path, pairs


def lora_graph(name: str, model: str = h.MODEL, **params):
    g = h.graph(
        "lora", prompt__text=PROMPT, schedule__steps=4, sampler__seed=11, lora__lora_name=name, **params
    )
    g.set_param("model", "checkpoint", model)
    return g


def reference(pipe, files: list[tuple[str, dict]], steps=4, seed=11, **size):
    """diffusers' own LoRA loading on the same pipeline, with the graph's scheduler (euler)."""
    pipe.scheduler = make_scheduler(Schedule("euler", steps), pipe.scheduler.config)
    for index, (path, _) in enumerate(files):
        pipe.load_lora_weights(str(path), adapter_name=f"a{index}")
    pipe.set_adapters([f"a{i}" for i in range(len(files))], adapter_weights=[w for _, w in files])
    return pipe(
        PROMPT,
        negative_prompt="",
        num_inference_steps=steps,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
        **size,
    ).images


def test_sd_lora_equals_diffusers_load_lora_weights_with_per_component_strengths(root):
    folder, sd_path, _ = root
    g = lora_graph("sd-kohya.safetensors", lora__strength_model=0.8, lora__strength_clip=-0.5)
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    weights = {"unet": 0.8, "text_encoder": -0.5}
    theirs = reference(h.pipeline(sd_path), [(folder / "loras" / "sd-kohya.safetensors", weights)], **_size())
    plain = h.run(h.executor(), h.graph(prompt__text=PROMPT, schedule__steps=4, sampler__seed=11))
    assert (ours - theirs).abs().max().item() < TOLERANCE
    assert (ours - plain.outputs["sampler"]["latent"].samples).abs().max().item() > 1e-3


def test_sdxl_lora_in_original_block_names_equals_diffusers(root):
    folder, _, _ = root
    g = lora_graph("xl-kohya.safetensors", model=XL, lora__strength_model=0.6, lora__strength_clip=1.3)
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    weights = {"unet": 0.6, "text_encoder": 1.3, "text_encoder_2": 1.3}
    theirs = reference(
        xl.pipeline(folder / XL), [(folder / "loras" / "xl-kohya.safetensors", weights)], **_size()
    )
    assert (ours - theirs).abs().max().item() < TOLERANCE


def test_two_chained_loras_stack_like_two_adapters(root):
    from app.graph.model import Edge, Node

    folder, sd_path, _ = root
    g = lora_graph("sd-kohya.safetensors", lora__strength_model=0.7, lora__strength_clip=0.4)
    g.add_node(
        Node("lora2", "model.lora", params={"lora_name": "sd-second.safetensors", "strength_model": -0.9})
    )
    g.connect(Edge("lora", "model", "lora2", "model"))
    g.connect(Edge("lora", "clip", "lora2", "clip"))
    for node, port, kind in (("sampler", "model", "model"), ("guidance", "model", "model")):
        g.disconnect(g.input_edge(node, port))
        g.connect(Edge("lora2", kind, node, port))
    for node in ("prompt", "negative"):
        g.disconnect(g.input_edge(node, "clip"))
        g.connect(Edge("lora2", "clip", node, "clip"))
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    files = [
        (folder / "loras" / "sd-kohya.safetensors", {"unet": 0.7, "text_encoder": 0.4}),
        (folder / "loras" / "sd-second.safetensors", {"unet": -0.9, "text_encoder": 1.0}),
    ]
    theirs = reference(h.pipeline(sd_path), files, **_size())
    assert (ours - theirs).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("model", ["sd", "xl"])
def test_every_key_format_gives_w_plus_strength_alpha_over_rank_up_down(root, tmp_path, model):
    folder, sd_path, _ = root
    pipe = h.pipeline(sd_path) if model == "sd" else xl.pipeline(folder / XL)
    parts = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    if model == "xl":
        parts["text_encoder_2"] = pipe.text_encoder_2
    pairs = L.make_pairs(
        pipe.unet, {k: v for k, v in parts.items() if k != "unet"}, 5, alphas=(1.0, 3.0, 0.5)
    )
    blocks = pipe.unet.config.layers_per_block
    formats = {
        "kohya": L.kohya(pairs, sdxl=model == "xl"),
        "kohya_original_blocks": L.kohya(pairs, blocks, sdxl=model == "xl"),
        "comfyui": L.comfyui(pairs, blocks),
        "diffusers_peft": L.peft(pairs),
    }
    before = {part: {k: v.clone() for k, v in m.state_dict().items()} for part, m in parts.items()}
    for name, state in formats.items():
        loaded = lora.read(L.save(state, tmp_path / f"{name}.safetensors"), pipe.unet.config)
        assert loaded.skipped == [] and len(loaded.layers) == len(pairs), name
        with lora.patched(parts, [(loaded, 0.75)]) as applied:
            assert applied.changed == len(pairs) and applied.warnings() == []
            for pair in pairs:
                module = _module(parts[pair.part], pair.module)
                expected = before[pair.part][_name(parts[pair.part], pair.module) + ".weight"]
                expected = expected + 0.75 * pair.change().reshape(module.weight.shape)
                assert torch.allclose(module.weight, expected, atol=1e-6), (name, pair.module)
        for part, module in parts.items():  # restored exactly on exit
            assert all(torch.equal(before[part][k], v) for k, v in module.state_dict().items()), (name, part)


def test_the_sampler_restores_the_base_weights_bit_for_bit_and_loads_the_model_once(root):
    _, sd_path, _ = root
    executor = h.executor()
    events = []
    h.run(executor, lora_graph("sd-kohya.safetensors"), target="model", events=events)
    loaded = manager().load(manager().loaded()[-1], torch.device("cpu"))
    before = {k: v.clone() for k, v in loaded.denoiser.state_dict().items()}
    te_before = {k: v.clone() for k, v in loaded.modules["text_encoder"].state_dict().items()}
    for strength in (1.0, 0.5, -2.0):
        h.run(executor, lora_graph("sd-kohya.safetensors", lora__strength_model=strength), events=events)
        h.run(executor, lora_graph("sd-second.safetensors", lora__strength_clip=strength), events=events)
    assert all(torch.equal(before[k], v) for k, v in loaded.denoiser.state_dict().items())
    assert all(torch.equal(te_before[k], v) for k, v in loaded.modules["text_encoder"].state_dict().items())
    loads = [e for e in events if e["event"] == "model" and e["action"] == "load"]
    assert len(loads) <= 1  # the base model is read once (or not at all when an earlier test loaded it)


def test_a_strength_change_reruns_only_what_that_output_feeds(root):
    executor = h.executor()
    h.run(executor, lora_graph("sd-kohya.safetensors"))

    def started(**params):
        events = []
        h.run(executor, lora_graph("sd-kohya.safetensors", **params), events=events)
        return sorted(e["node"] for e in events if e["event"] == "started")

    assert started(lora__strength_model=0.5) == ["guidance", "lora", "sampler"]  # prompts stay cached
    assert started(lora__strength_model=0.5, lora__strength_clip=0.25) == [
        "lora",
        "negative",
        "prompt",
        "sampler",
    ]


def test_strength_zero_is_the_base_model_exactly_and_model_only_leaves_prompts_alone(root):
    from app.graph.model import Edge, Node

    base = h.run(h.executor(), h.graph(prompt__text=PROMPT, schedule__steps=4, sampler__seed=11))
    zero = h.run(
        h.executor(), lora_graph("sd-kohya.safetensors", lora__strength_model=0.0, lora__strength_clip=0.0)
    )
    assert torch.equal(base.outputs["sampler"]["latent"].samples, zero.outputs["sampler"]["latent"].samples)
    g = h.graph(prompt__text=PROMPT, schedule__steps=4, sampler__seed=11)
    g.add_node(Node("only", "model.lora_model_only", params={"lora_name": "sd-kohya.safetensors"}))
    g.connect(Edge("model", "model", "only", "model"))
    for node in ("sampler", "guidance"):
        g.disconnect(g.input_edge(node, "model"))
        g.connect(Edge("only", "model", node, "model"))
    executor = h.executor()
    events = []
    h.run(executor, h.graph(prompt__text=PROMPT, schedule__steps=4, sampler__seed=11))
    only = h.run(executor, g, events=events).outputs["sampler"]["latent"].samples
    assert "prompt" in [e["node"] for e in events if e["event"] == "cached"]
    full = h.run(h.executor(), lora_graph("sd-kohya.safetensors", lora__strength_clip=0.0))
    assert torch.allclose(only, full.outputs["sampler"]["latent"].samples, atol=1e-6)


def test_keys_that_fit_nothing_are_reported_as_a_warning(root, tmp_path):
    folder, _, pairs = root
    state = L.kohya(pairs["sd"])
    state["lora_unet_no_such_block_to_q.lora_down.weight"] = torch.zeros(2, 8)
    state["lora_unet_no_such_block_to_q.lora_up.weight"] = torch.zeros(8, 2)
    state["lora_unet_down_blocks_1_attentions_0_proj_in.hada_w1_a"] = torch.zeros(2, 2)  # LoHa: not read
    L.save(state, folder / "loras" / "sd-extra.safetensors")
    events = []
    h.run(h.executor(), lora_graph("sd-extra.safetensors"), events=events)
    warnings = [(e["node"], e["message"]) for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and warnings[0][0] == "sampler"  # once per run, not again by Text Encode
    warnings = [warnings[0][1]]
    assert "sd-extra.safetensors: 2 keys not applied" in warnings[0]
    assert "no.such.block" in warnings[0] or "no_such_block" in warnings[0]
    finished = next(e for e in events if e["event"] == "finished" and e["node"] == "sampler")
    assert finished["lora_layers"] == sum(1 for p in pairs["sd"] if p.part == "unet")


def test_a_file_that_is_not_a_lora_is_refused_at_validation(root):
    from app.engine.plan import validate
    from app.registry import default_registry

    folder, _, _ = root
    L.save({"emb_params": torch.zeros(2, 8)}, folder / "loras" / "not-a-lora.safetensors")
    problems = [str(p) for p in validate(lora_graph("not-a-lora.safetensors"), default_registry())]
    assert problems == [
        "node 'lora': not-a-lora.safetensors: no LoRA keys in it (is it a checkpoint or an embedding?)"
    ]
    problems = [str(p) for p in validate(lora_graph("missing.safetensors"), default_registry())]
    assert len(problems) == 1 and "loras model 'missing.safetensors' not found (looked in" in problems[0]


def _size() -> dict[str, int]:
    return {"height": h.SIZE, "width": h.SIZE}


def _module(owner, name: str):
    return owner.get_submodule(_name(owner, name))


def _name(owner, name: str) -> str:
    return name if hasattr(owner, "text_model") else name.removeprefix("text_model.")


@pytest.mark.parametrize("cache_first", [False, True])
def test_lora_and_cache_patches_compose_in_either_order(root, cache_first):
    from app.graph.model import Edge, Node

    alone = h.run(h.executor(), lora_graph("sd-kohya.safetensors")).outputs["sampler"]["latent"].samples
    g = lora_graph("sd-kohya.safetensors")
    g.add_node(Node("cache", "sampling.cache", params={"strategy": "deepcache", "interval": 1}))
    if cache_first:  # checkpoint -> cache -> lora -> sampler
        g.disconnect(g.input_edge("lora", "model"))
        g.connect(Edge("model", "model", "cache", "model"))
        g.connect(Edge("cache", "model", "lora", "model"))
    else:  # checkpoint -> lora -> cache -> sampler
        g.disconnect(g.input_edge("sampler", "model"))
        g.connect(Edge("lora", "model", "cache", "model"))
        g.connect(Edge("cache", "model", "sampler", "model"))
    events = []
    both = h.run(h.executor(), g, events=events).outputs["sampler"]["latent"].samples
    finished = next(e for e in events if e["event"] == "finished" and e["node"] == "sampler")
    assert finished["lora_layers"] > 0 and finished["cache_total_blocks"] > 0  # both patches applied
    assert torch.allclose(both, alone, atol=1e-6)  # interval 1 skips nothing: the LoRA result exactly
