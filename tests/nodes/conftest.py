"""Fixtures of the diffusion node tests: the tiny random model as the first model root, per test module."""

from __future__ import annotations

import pytest

from tests.nodes import diffusion_helpers as h


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    with h.model_root(tmp_path_factory.mktemp("models")) as path:
        yield path


@pytest.fixture(scope="module")
def dit_root(tmp_path_factory):
    """The tiny random SD3 (flow_helpers.SD3, seed 0) and Flux (FLUX, seed 2) in the first model root."""
    from tests.nodes import flow_helpers as f
    from tools import make_tiny_random_dit as dit

    folder = tmp_path_factory.mktemp("dit")
    with h.model_root(folder):
        dit.write("sd3", folder / f.SD3, seed=0)
        dit.write("flux", folder / f.FLUX, seed=2)
        yield folder
