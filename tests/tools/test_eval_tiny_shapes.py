"""The eval's pixel judge reads drawn shapes correctly and notices wrong or missing ones."""

from __future__ import annotations

import numpy as np

from nodes.shapes import COLOURS, draw
from tools.eval_tiny_shapes import contact_sheet, eval_pairs, judge, score
from tools.tiny_shapes_data import random_batch


def test_judge_reads_every_drawn_training_image() -> None:
    images, samples = random_batch(np.random.default_rng(3), 300)
    pairs = [(sample, 0) for sample in samples]
    assert score(list(images), pairs) == {
        "found": 1.0,
        "background": 1.0,
        "colour": 1.0,
        "shape": 1.0,
        "all": 1.0,
    }


def test_judge_tells_the_three_shapes_apart_and_sees_an_empty_picture() -> None:
    for shape in ("circle", "square", "triangle"):
        image = draw(shape, COLOURS["yellow"], COLOURS["black"], 0.4, 0.6, 0.2)
        seen = judge(image)
        assert (seen.found, seen.shape, seen.colour, seen.background) == (True, shape, "yellow", "black")
    empty = np.zeros((64, 64, 3), np.uint8) + np.array(COLOURS["green"], np.uint8)
    seen = judge(empty)
    assert not seen.found and seen.background == "green"


def test_wrong_pictures_score_zero_on_what_is_wrong() -> None:
    pairs = eval_pairs(6)
    wrong = []
    for sample, _ in pairs:
        other = next(c for c in COLOURS if c not in (sample.colour, sample.background))
        wrong.append(draw(sample.shape, COLOURS[other], COLOURS[sample.background], 0.5, 0.5, 0.25))
    result = score(wrong, pairs)
    assert result["colour"] == 0.0 and result["all"] == 0.0 and result["background"] == 1.0


def test_eval_pairs_cover_every_combination_and_contact_sheet_is_written(tmp_path) -> None:
    pairs = eval_pairs(90)
    assert len({p[0] for p in pairs}) == 90 and len({p[1] for p in pairs}) == 90
    images = [draw(s.shape, COLOURS[s.colour], COLOURS[s.background], 0.5, 0.5, 0.25) for s, _ in pairs[:12]]
    contact_sheet(images, pairs[:12], tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 1000
