"""Scheduler node: every choice runs, the table matches diffusers, bad combinations fail validation."""

from __future__ import annotations

import inspect

import diffusers
import pytest
import torch

from app.engine.plan import validate
from app.registry import default_registry
from app.runtime.schedulers import SCHEDULERS, make_scheduler, timesteps
from app.runtime.values import Schedule
from tests.nodes import diffusion_helpers as h


def test_table_flags_match_the_diffusers_classes():
    sigma_flags = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"}
    for name, kind in SCHEDULERS.items():
        for variant in (kind.diffusion, kind.flow):
            if variant is None:
                continue
            cls = getattr(diffusers, variant.cls)
            takes = set(inspect.signature(cls.__init__).parameters)
            assert variant.sigmas == (sigma_flags <= takes), name
            assert set(variant.overrides) <= takes, name
            assert variant.custom_timesteps == (
                "timesteps" in inspect.signature(cls.set_timesteps).parameters
            ), name


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_samples(model_path, name):
    latent = h.run(h.executor(), h.graph(schedule__scheduler=name, schedule__steps=3)).outputs["sampler"][
        "latent"
    ]
    assert torch.isfinite(latent.samples).all() and latent.samples.abs().max() > 0


def test_karras_and_custom_timesteps_reach_the_scheduler(model_path):
    config = h.pipeline(model_path).scheduler.config
    karras = make_scheduler(Schedule("dpmpp_2m", 6, sigmas="karras"), config)
    assert karras.config.use_karras_sigmas
    beta = make_scheduler(Schedule("euler", 6, sigmas="beta"), config)
    assert beta.config.use_beta_sigmas and not beta.config.use_karras_sigmas
    ays = (999, 850, 736, 645, 545, 455, 343, 233, 124, 24)
    euler = make_scheduler(Schedule("euler", timesteps=ays), config)
    steps, count = timesteps(euler, Schedule("euler", timesteps=ays), "cpu")
    assert count == 10 and [int(t) for t in steps] == list(ays)
    g = h.graph(schedule__scheduler="euler", schedule__timesteps="999, 500, 100")
    events: list[dict] = []
    h.run(h.executor(), g, events=events)
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3]


def test_unsupported_options_fail_validation(model_path):
    registry = default_registry()
    cases = {
        (("scheduler", "ddim"), ("karras", True)): "ddim does not take karras sigmas",
        (("scheduler", "pndm"), ("sigmas", "exponential")): "pndm does not take exponential sigmas",
        (("sigmas", "beta"), ("karras", True)): "karras is on but sigmas is 'beta'",
        (("scheduler", "euler"), ("sigmas", "cosine")): "not one of",
        (("scheduler", "pndm"), ("timesteps", "999, 500")): "pndm does not take a custom timestep list",
        (("scheduler", "euler"), ("timesteps", "100, 500")): "decreasing order",
        (("scheduler", "euler"), ("timesteps", "9x9")): "whole numbers",
        (("scheduler", "euler"), ("timesteps", "1500, 999, 500")): "must lie in 0..999",
    }
    for settings, expected in cases.items():
        g = h.graph()
        for param, value in settings:
            g.set_param("schedule", param, value)
        problems = [str(p) for p in validate(g, registry)]
        assert len(problems) == 1 and problems[0].startswith("node 'schedule'") and expected in problems[0]
