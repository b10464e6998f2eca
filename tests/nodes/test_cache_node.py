"""The Step Cache node through whole graphs: exact when nothing is cached, skipped blocks on the Sampler's finished
event, composition with CFG and PAG, adaptive plans that reproduce, and a loaded model left as it was."""

from __future__ import annotations

import pytest
import torch

from app.engine.context import RunSettings
from app.runtime.models import manager
from app.runtime.step_cache import DeepCache
from app.runtime.step_cache.deepcache import UNetWalk
from nodes.step_cache import _validate
from tests.nodes import diffusion_helpers as h

STEPS = 6


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return h.make_model_root(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def saved_per_cached_pass(model_path):
    """UNet blocks a branch-0 shallow pass leaves out, on the tiny model (counted by hand in tests/runtime)."""
    from diffusers import UNet2DConditionModel

    walk = UNetWalk(UNet2DConditionModel.from_pretrained(model_path / "unet", local_files_only=True))
    return walk.total_blocks - walk.blocks_run(0)


def _latents(name="txt2img_deepcache", events=None, **params):
    g = h.graph(name, schedule__steps=STEPS, sampler__seed=7, **params)
    return h.run(h.executor(), g, events=events).outputs["sampler"]["latent"].samples


def _finished(events, node="sampler"):
    return next(e for e in events if e["event"] == "finished" and e["node"] == node)


def test_interval_one_and_strategy_none_equal_plain_txt2img(model_path):
    plain = _latents("txt2img")
    assert torch.equal(_latents(cache__interval=1), plain)
    assert torch.equal(_latents(cache__strategy="none"), plain)


def test_sampler_reports_skipped_blocks_beside_its_duration(model_path, saved_per_cached_pass):
    events: list = []
    cached = _latents(events=events, cache__interval=3)  # the node's default start=2: full at 0, 1, 2, 5
    finished = _finished(events)
    cached_steps = STEPS - len(DeepCache(interval=3, start=2).full_steps(STEPS))
    assert cached_steps == 2
    assert "duration" in finished
    assert finished["skipped_blocks"] == cached_steps * saved_per_cached_pass  # CFG runs as one batch
    plain = _latents("txt2img")
    assert not torch.equal(cached, plain)
    assert ((cached - plain).norm() / plain.norm()).item() < 0.2


@pytest.mark.parametrize(
    "scheduler,loop_steps", [("heun", 2 * STEPS - 1), ("euler_a", STEPS), ("dpmpp_2m", STEPS)]
)
def test_every_scheduler_is_keyed_by_loop_step(model_path, saved_per_cached_pass, scheduler, loop_steps):
    """Heun calls the model twice per step (11 loop steps for 6): the schedule follows the Sampler's loop."""
    plain = _latents("txt2img", schedule__scheduler=scheduler)
    assert torch.equal(_latents(cache__interval=1, schedule__scheduler=scheduler), plain)
    events: list = []
    _latents(events=events, cache__interval=2, cache__start=0, schedule__scheduler=scheduler)
    cached_steps = loop_steps - len(DeepCache(interval=2).full_steps(loop_steps))
    assert _finished(events)["skipped_blocks"] == cached_steps * saved_per_cached_pass


def test_cache_composes_with_pag(model_path, saved_per_cached_pass):
    pag = {"guidance__method": "pag", "guidance__perturbed_scale": 2.0, "guidance__scale": 5.0}
    reference = _latents("txt2img", **pag)
    assert torch.equal(_latents(cache__interval=1, **pag), reference)
    events: list = []
    cached = _latents(events=events, cache__interval=2, cache__start=0, **pag)
    # Steps 1, 3, 5 are cached. Each pass (cond, uncond, perturbed) keeps its own feature; the perturbed pass
    # only runs inside diffusers' default PAG window (1%..20% of the steps: step 1 here), and there it has no
    # feature of its own yet, so it runs in full rather than borrow another pass's.
    assert _finished(events)["skipped_blocks"] == 3 * 2 * saved_per_cached_pass
    assert 0 < ((cached - reference).norm() / reference.norm()).item() < 0.2


def test_pab_runs_through_the_sampler(model_path):
    events: list = []
    params = {"cache__self_interval": 2, "cache__cross_interval": 2, "cache__start": 0}
    cached = _latents(events=events, cache__strategy="pab", **params)
    # 4 transformer blocks x (self + cross attention) reuse their output at the odd steps 1, 3, 5.
    assert _finished(events)["skipped_blocks"] == 8 * 3
    assert not torch.equal(cached, _latents("txt2img"))


def test_adaptive_plan_is_reported_and_reproduces_when_pasted(model_path):
    events: list = []
    calibrated = _latents(events=events, cache__strategy="adaptive", cache__steps=STEPS, cache__interval=2)
    plan = _finished(events, "cache")["plan"]
    assert len(plan.split(",")) == 3 and plan.startswith("0,")
    pasted = _latents(cache__strategy="adaptive", cache__steps=STEPS, cache__plan=plan)
    assert torch.equal(pasted, calibrated)


def test_the_loaded_model_is_unchanged_by_cached_runs(model_path):
    before = _latents("txt2img")
    for strategy in ("deepcache", "pab", "adaptive"):
        _latents(cache__strategy=strategy)
    assert torch.equal(_latents("txt2img"), before)
    for source in manager().loaded():
        unet = manager().load(source, torch.device("cpu")).denoiser
        if type(unet).__name__ != "UNet2DConditionModel":
            continue  # a DiT another test file cached in this process; its own tests check it
        assert not any(hasattr(m, "_diffusers_hook") or "forward" in vars(m) for m in unet.modules())


def test_bad_cache_params_are_clear_errors(model_path, tmp_path):
    g = h.graph("txt2img_deepcache", cache__branch=9)
    result = h.executor().run(g, ["sampler"], RunSettings(device="cpu", output_dir=tmp_path))
    assert result.status == "error"
    assert "branch must be between 0 and 3" in result.errors["cache"]
    params = {"strategy": "adaptive", "plan": "2,x", "steps": 10, "branch": 0}
    assert any("step numbers separated by commas" in p for p in _validate(params, {"model": "sd15"}))
    params = {
        "strategy": "deepcache",
        "interval": 3,
        "branch": 0,
        "schedule": "uniform",
        "start": 0,
        "end": 0,
    }
    assert _validate(params, {"model": "sd15"}) == []
    assert "has no UNet" in _validate(params, {"model": "flux"})[0]
