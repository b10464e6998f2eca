"""Sweep expansion: zipped within a group, product across groups, times runs, counted and capped first,
values typed by each param."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.graph import serialize
from app.jobs import sweep
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = default_registry()


@pytest.fixture
def graph():
    return serialize.load(ROOT / "graphs" / "txt2img.json", REGISTRY)


def _params(job, node):
    return json.loads(job[0])["nodes"][node]["params"]


def test_groups_zip_inside_and_multiply_across_with_runs_outermost(graph):
    groups = [{"prompt.text": ["a", "b"], "negative.text": ["x", "y"]}, {"sampler.seed": ["1", "2", "3"]}]
    jobs = sweep.expand(graph, REGISTRY, groups, {"schedule.steps": "4"}, runs=2)
    assert len(jobs) == sweep.count(groups, 2) == 12
    values = [v for _, v in jobs]
    assert values[:4] == [
        {"prompt.text": "a", "negative.text": "x", "sampler.seed": 1},
        {"prompt.text": "a", "negative.text": "x", "sampler.seed": 2},
        {"prompt.text": "a", "negative.text": "x", "sampler.seed": 3},
        {"prompt.text": "b", "negative.text": "y", "sampler.seed": 1},
    ]
    assert values[6:] == values[:6]  # the second run repeats the first
    first = jobs[0]
    assert _params(first, "sampler")["seed"] == 1 and _params(first, "schedule")["steps"] == 4
    assert _params(first, "prompt")["text"] == "a" and _params(first, "negative")["text"] == "x"
    assert graph.nodes["sampler"].params["seed"] == 42  # the graph itself is untouched


def test_values_from_text_ranges_lists_files_and_escaped_commas(tmp_path):
    assert sweep.values_from_text("3..6") == ["3", "4", "5", "6"]
    assert sweep.values_from_text("-1..1") == ["-1", "0", "1"]
    assert sweep.values_from_text("a red fox\\, at night,a cat") == ["a red fox, at night", "a cat"]
    (tmp_path / "prompts.txt").write_text("a fox\n\n  a cat  \n")
    assert sweep.values_from_text("@prompts.txt", tmp_path) == ["a fox", "a cat"]
    assert sweep.values_from_text("0.5..x") == ["0.5..x"]  # not a whole-number range: one value
    with pytest.raises(sweep.SweepProblem, match="ends before it starts"):
        sweep.values_from_text("5..1")
    with pytest.raises(sweep.SweepProblem, match="cannot read the values file"):
        sweep.values_from_text("@missing.txt", tmp_path)


def test_bad_sweeps_are_refused_before_anything_expands(graph):
    with pytest.raises(sweep.SweepProblem, match="one length: prompt.text has 2, negative.text has 1"):
        sweep.count([{"prompt.text": ["a", "b"], "negative.text": ["x"]}])
    with pytest.raises(sweep.SweepProblem, match="makes 20000 jobs, more than the 10000"):
        sweep.expand(graph, REGISTRY, [{"sampler.seed": list(range(100))}, {"prompt.text": ["a"] * 200}])
    with pytest.raises(sweep.SweepProblem, match="'sampler.seed': expected a whole number, got 'x'"):
        sweep.expand(graph, REGISTRY, [{"sampler.seed": ["1", "x"]}])
    with pytest.raises(sweep.SweepProblem, match="the graph has no node 'nope'"):
        sweep.expand(graph, REGISTRY, [{"nope.seed": ["1"]}])
    with pytest.raises(sweep.SweepProblem, match="has no param 'colour'"):
        sweep.expand(graph, REGISTRY, [{"sampler.colour": ["1"]}])
    with pytest.raises(sweep.SweepProblem, match="schedule.steps"):
        sweep.expand(graph, REGISTRY, [{"schedule.steps": [0]}])  # JSON values are checked as they are


def test_json_values_keep_their_types(graph):
    jobs = sweep.expand(graph, REGISTRY, [{"guidance.scale": [3, 7.5]}])
    assert [_params(j, "guidance")["scale"] for j in jobs] == [3.0, 7.5]
    assert all(isinstance(_params(j, "guidance")["scale"], float) for j in jobs)
