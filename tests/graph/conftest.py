"""A registry of the torch-free node families, for command and history tests."""

from __future__ import annotations

import pytest

import nodes.image_io
import nodes.numbers
import nodes.shapes
import nodes.values
from app.registry import Registry


def light_registry() -> Registry:
    registry = Registry()
    for module in (nodes.values, nodes.numbers, nodes.image_io, nodes.shapes):
        registry.add_module(module)
    return registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    return light_registry()
