"""Guidance: each diffusers guider through our adapter equals the same guider in a plain diffusers loop;
residual CFG runs the promised number of model passes; a shared model leaks nothing between samplers."""

from __future__ import annotations

import pytest
import torch
from diffusers import guiders
from diffusers.hooks import LayerSkipConfig, SmoothedEnergyGuidanceConfig
from diffusers.utils.torch_utils import randn_tensor

from app.engine.plan import validate
from app.graph.model import Edge, Node
from app.registry import Registry, default_registry
from app.runtime.guidance import guider_problems
from app.runtime.values import Guider
from tests.nodes import diffusion_helpers as h

PROMPT = "a green square"
STEPS, SEED, SCALE = 5, 99, 5.0
FQN = "mid_block.attentions.0.transformer_blocks"


def reference_guider(method: str):
    common = {"guidance_scale": SCALE}
    if method == "pag":
        config = LayerSkipConfig(
            [0], fqn=FQN, skip_attention=False, skip_attention_scores=True, skip_ff=False
        )
        return guiders.PerturbedAttentionGuidance(perturbed_guidance_config=config, **common)
    if method == "skip_layer":
        return guiders.SkipLayerGuidance(skip_layer_config=LayerSkipConfig([0], fqn=FQN), **common)
    if method == "seg":
        return guiders.SmoothedEnergyGuidance(
            seg_guidance_config=SmoothedEnergyGuidanceConfig([0], fqn=FQN), **common
        )
    if method == "auto_guidance":
        return guiders.AutoGuidance(auto_guidance_config=LayerSkipConfig([0], fqn=FQN, dropout=1.0), **common)
    classes = {
        "cfg_zero_star": guiders.ClassifierFreeZeroStarGuidance,
        "tangential": guiders.TangentialClassifierFreeGuidance,
        "apg": guiders.AdaptiveProjectedGuidance,
    }
    return classes[method](**common)


def plain_loop(model_path, guider, scheduler_name: str = "euler"):
    """The guider protocol as diffusers' modular denoise loop drives it (anchor-diffusers.md §2.3)."""
    from app.runtime.schedulers import make_scheduler
    from app.runtime.values import Schedule

    pipe = h.pipeline(model_path)
    scheduler = make_scheduler(Schedule(scheduler_name, STEPS), pipe.scheduler.config)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, "")
        generator = torch.Generator("cpu").manual_seed(SEED)
        scheduler.set_timesteps(STEPS)
        x = randn_tensor((1, 4, h.SIZE // 2, h.SIZE // 2), generator=generator) * scheduler.init_noise_sigma
        for i, t in enumerate(scheduler.timesteps):
            x_in = scheduler.scale_model_input(x, t)
            guider.set_state(step=i, num_inference_steps=STEPS, timestep=t)
            batches = guider.prepare_inputs({"encoder_hidden_states": (cond, uncond)})
            for batch in batches:
                guider.prepare_models(pipe.unet)
                batch.noise_pred = pipe.unet(
                    x_in, t, encoder_hidden_states=batch.encoder_hidden_states
                ).sample
                guider.cleanup_models(pipe.unet)
            x = scheduler.step(guider(batches).pred, t, x, generator=generator).prev_sample
    return x


@pytest.mark.parametrize(
    "method", ["cfg_zero_star", "tangential", "apg", "pag", "skip_layer", "seg", "auto_guidance"]
)
def test_adapter_matches_diffusers_guider_in_a_plain_loop(model_path, method):
    g = h.graph(prompt__text=PROMPT, guidance__method=method, guidance__scale=SCALE, sampler__seed=SEED)
    g.set_param("schedule", "steps", STEPS)
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    reference = plain_loop(model_path, reference_guider(method))
    error = (ours - reference).abs().max().item()
    print(f"{method}: max abs error {error:.2e}")
    assert error < 1e-4


def count_unet_passes(model_path, method: str, steps: int) -> tuple[int, torch.Tensor]:
    from app.runtime.models import manager

    g = h.graph(
        guidance__method=method, guidance__scale=1.5, schedule__scheduler="ddim", schedule__steps=steps
    )
    calls = []
    executor = h.executor()
    h.run(executor, g, target="model")
    loaded = manager().load(manager().loaded()[-1], torch.device("cpu"))
    handle = loaded.denoiser.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        latent = h.run(executor, g).outputs["sampler"]["latent"].samples
    finally:
        handle.remove()
    return sum(calls), latent  # batch items the UNet saw: one per pass


def test_residual_cfg_runs_one_pass_per_step_and_onetime_one_more(model_path):
    self_calls, self_latent = count_unet_passes(model_path, "rcfg_self", 4)
    onetime_calls, onetime_latent = count_unet_passes(model_path, "rcfg_onetime", 4)
    cfg_calls, cfg_latent = count_unet_passes(model_path, "cfg", 4)
    assert (self_calls, onetime_calls, cfg_calls) == (4, 5, 8)
    assert torch.isfinite(self_latent).all() and torch.isfinite(onetime_latent).all()
    assert (self_latent - cfg_latent).abs().max() > 1e-4


def test_residual_cfg_matches_the_streamdiffusion_formula_in_a_ddim_loop(model_path):
    steps, scale = 4, 1.5
    g = h.graph(prompt__text=PROMPT, guidance__method="rcfg_self", guidance__scale=scale, sampler__seed=SEED)
    g.set_param("schedule", "scheduler", "ddim")
    g.set_param("schedule", "steps", steps)
    ours = h.run(h.executor(), g).outputs["sampler"]["latent"].samples
    pipe = h.pipeline(model_path)
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        cond, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
        generator = torch.Generator("cpu").manual_seed(SEED)
        scheduler.set_timesteps(steps)
        x = randn_tensor((1, 4, h.SIZE // 2, h.SIZE // 2), generator=generator)
        x0 = torch.zeros_like(x)
        for t in scheduler.timesteps:
            abar = scheduler.alphas_cumprod[int(t)].item()
            virtual = (x - abar**0.5 * x0) / (1 - abar) ** 0.5
            eps_cond = pipe.unet(x, t, encoder_hidden_states=cond).sample
            eps = virtual + scale * (eps_cond - virtual)
            x0 = (x - (1 - abar) ** 0.5 * eps) / abar**0.5
            x = scheduler.step(eps, t, x).prev_sample
    assert (ours - x).abs().max().item() < 1e-4


def test_shared_model_pag_branch_leaks_nothing_into_the_plain_branch(model_path):
    plain_alone = h.run(h.executor(), h.graph(schedule__steps=4)).outputs["sampler"]["latent"].samples
    g = h.graph(schedule__steps=4)
    g.add_node(Node("guidance_pag", "sampling.guidance", params={"method": "pag", "scale": 5.0}))
    g.add_node(Node("sampler_pag", "sampling.sampler", params={"seed": 42}))
    g.connect(Edge("model", "model", "guidance_pag", "model"))
    for src, port, dst in [
        ("model", "model", "model"),
        ("prompt", "conditioning", "positive"),
        ("negative", "conditioning", "negative"),
        ("latent", "latent", "latent"),
        ("schedule", "schedule", "schedule"),
        ("guidance_pag", "guider", "guider"),
    ]:
        g.connect(Edge(src, port, "sampler_pag", dst))
    executor = h.executor()
    pag = h.run(executor, g, target="sampler_pag").outputs["sampler_pag"]["latent"].samples
    plain_after = h.run(executor, g, target="sampler").outputs["sampler"]["latent"].samples
    assert (pag - plain_alone).abs().max() > 1e-4  # PAG really did something different
    assert torch.equal(plain_after, plain_alone)
    from app.runtime.models import manager

    unet = manager().load(manager().loaded()[-1], torch.device("cpu")).denoiser
    registry = getattr(unet, "_diffusers_hook", None)
    assert registry is None or not registry.hooks


def test_layer_guiders_refuse_a_model_family_without_unet_layers(counting):
    assert guider_problems(Guider("pag"), "flux")
    assert guider_problems(Guider("pag"), "sd15") == []
    assert guider_problems(Guider("cfg"), "flux") == []
    assert (
        "layers must look like" in guider_problems(Guider("seg", options={"layers": "nonsense:x"}), "sd15")[0]
    )
    registry = Registry([*default_registry().specs(), *counting.registry.specs()])
    g = h.graph()
    g.add_node(Node("dit", "test.model", params={"family": "flux"}))
    g.disconnect(g.input_edge("guidance", "model"))
    g.connect(Edge("dit", "model", "guidance", "model"))
    g.set_param("guidance", "method", "pag")
    problems = [str(p) for p in validate(g, registry)]
    assert any("guidance" in p and "pag perturbs UNet attention layers; a flux model" in p for p in problems)


def test_a_layer_typo_is_the_guidance_nodes_error_naming_the_real_block_lists(model_path):
    typo = "mid_block.attention.0.transformer_blocks"
    for layers, expected in (
        (f"{typo}:0", f"{typo!r} is not a block list of this model (it has down_blocks."),
        ("mid_block.attentions.0.transformer_blocks:7", "has 1 blocks (0..0), not 7"),
    ):
        g = h.graph(guidance__method="pag", guidance__layers=layers, schedule__steps=2)
        result = h.executor().run(g, ["sampler"])
        assert result.status == "error" and set(result.errors) == {"guidance"}, result.errors
        assert expected in result.errors["guidance"] and "Error:" not in result.errors["guidance"]
