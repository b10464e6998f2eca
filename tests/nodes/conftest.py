"""Fixtures of the diffusion node tests: the tiny random model as the first model root, per test module."""

from __future__ import annotations

import pytest

from tests.nodes import diffusion_helpers as h


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    with h.model_root(tmp_path_factory.mktemp("models")) as path:
        yield path
