"""The embedded tiny-shapes model means what it is told, through Nodeloom's own graphs and nodes.

These assert effects (a prompt followed, a colour pushed away, a shape put where the control says), judged by
the eval's pixel heuristics, never exact pixels. Seeds and prompts differ from the ones training drew.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from nodes.shapes import COLOURS
from tests.nodes import diffusion_helpers as h
from tools import eval_tiny_controlnet as control_eval
from tools.eval_tiny_shapes import GraphRenderer, eval_pairs, judge, score
from tools.tiny_shapes_data import Sample


@pytest.fixture(scope="module")
def renderer() -> GraphRenderer:
    return GraphRenderer(h.ROOT / "graphs" / "txt2img.json", "tiny-shapes")


def test_the_shipped_txt2img_graph_draws_its_default_prompt(renderer) -> None:
    assert renderer.defaults["prompt"] == "a yellow triangle on a blue background"
    [image] = renderer.render([(Sample("yellow", "triangle", "blue"), renderer.defaults["seed"])])
    seen = judge(image)
    assert (seen.found, seen.colour, seen.shape, seen.background) == (True, "yellow", "triangle", "blue")


def test_prompts_across_the_grammar_are_followed(renderer) -> None:
    pairs = eval_pairs(8, seed=20_000)
    assert score(renderer.render(pairs, steps=10), pairs)["all"] >= 7 / 8


def _share_near(images: list[np.ndarray], colour: str) -> float:
    """Mean share of pixels within 80 (RGB distance) of a palette colour."""
    rgb = np.asarray(COLOURS[colour], np.float32)
    return float(
        np.mean([(np.linalg.norm(im.astype(np.float32) - rgb, axis=-1) < 80).mean() for im in images])
    )


def test_a_colour_in_the_negative_prompt_is_pushed_away_harder_as_guidance_rises(renderer) -> None:
    pairs = [(Sample("red", "circle", "white"), 300 + i) for i in range(3)]
    plain = renderer.render(pairs, steps=10)
    assert _share_near(plain, "red") > 0.1  # a red circle is there
    off = renderer.render(pairs, steps=10, guidance=1.0, negative="red")
    for image, same in zip(off, renderer.render(pairs, steps=10, guidance=1.0), strict=True):
        np.testing.assert_array_equal(image, same)  # scale 1 = no guidance: the negative is not used
    mild = _share_near(renderer.render(pairs, steps=10, guidance=3.0, negative="red"), "red")
    strong = _share_near(renderer.render(pairs, steps=10, negative="red"), "red")
    assert strong < mild < _share_near(plain, "red")
    assert strong < _share_near(plain, "red") / 3


def test_the_shipped_controlnet_puts_the_shape_where_the_edges_are(monkeypatch) -> None:
    monkeypatch.setenv("NODELOOM_MODEL_ROOTS", os.environ.get("NODELOOM_MODEL_ROOTS", ""))  # restored after
    result = control_eval.evaluate(control_eval.CONTROLNET, count=4, steps=10)
    assert result["controlnet"] > 0.6
    assert result["controlnet"] > result["without"] + 0.3


def test_the_shipped_lora_draws_outlines_and_its_strength_is_a_dial() -> None:
    from tools.train_tiny_lora import render, solidity

    picks = [("red", "circle", "blue"), ("yellow", "square", "green"), ("white", "triangle", "black")]
    pictures = render(picks, (0.0, 1.0), seed=31_000)
    solid = {
        s: np.mean([solidity(i, p[0]) for i, p in zip(images, picks, strict=True)])
        for s, images in pictures.items()
    }
    assert solid[0.0] > 0.9  # strength 0: the base model's filled shapes
    assert solid[1.0] < 0.75  # strength 1: hollow outlines (a drawn outline measures about 0.4)
    assert all(judge(image).colour == pick[0] for image, pick in zip(pictures[1.0], picks, strict=True))
