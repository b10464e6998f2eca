"""Subgraphs: grouping nodes keeps every key (so results are shared with the ungrouped graph), the file
round-trips byte for byte, Group / Ungroup undo exactly, exposed params reach the inner nodes, problems
inside are said on the instance, and the shipped KSampler template runs as Scheduler + Guidance + Sampler."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.engine.keys import compute_keys
from app.engine.plan import effective_graph, topological_order, validate
from app.files import FileResolver
from app.graph import serialize
from app.graph.history import History
from app.graph.model import Edge
from app.graph.subgraph_commands import Group, Ungroup
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
TRIO = ["schedule", "guidance", "sampler"]


@pytest.fixture
def registry():
    return default_registry()


def _txt2img(registry):
    return serialize.load(ROOT / "graphs" / "txt2img.json", registry)


def _keys(graph, registry):
    runnable, _ = effective_graph(graph, registry)
    return compute_keys(runnable, registry, topological_order(runnable), FileResolver(), "")[0]


def _grouped(registry, params=(("sampler", "seed"), ("schedule", "steps"))):
    graph = _txt2img(registry)
    history = History(graph, registry)
    command = Group(TRIO, "trio", params)
    history.push(command)
    return graph, history, command


def test_grouping_keeps_every_key_and_the_file_round_trips(registry):
    plain = _keys(_txt2img(registry), registry)
    graph, _, command = _grouped(registry)
    assert command.node_id == "trio" and graph.nodes["trio"].type == "subgraph:trio"
    assert not set(TRIO) & set(graph.nodes)
    keys = _keys(graph, registry)
    for node in ("model", "prompt", "negative", "latent", "decode", "save"):
        assert keys[node] == plain[node], node
    assert keys["trio__sampler"] == plain["sampler"]
    text = serialize.dumps(graph)
    again = serialize.loads(text, registry)
    assert serialize.dumps(again) == text
    assert json.loads(text)["definitions"]["subgraphs"]["trio"]["params"] == [
        {"name": "seed", "to": [["sampler", "seed"]]},
        {"name": "steps", "to": [["schedule", "steps"]]},
    ]


def test_the_model_input_stays_one_input_and_exposed_params_reach_the_inner_nodes(registry):
    graph, _, _ = _grouped(registry)
    definition = graph.definitions["trio"]
    assert definition.inputs["model"] == (("guidance", "model"), ("sampler", "model"))
    assert set(definition.inputs) == {"model", "positive", "negative", "latent"}
    assert definition.outputs == {"latent": ("sampler", "latent")}
    graph.set_param("trio", "seed", 7)
    flat, _ = effective_graph(graph, registry)
    assert flat.nodes["trio__sampler"].params["seed"] == 7
    ungrouped = _txt2img(registry)
    ungrouped.set_param("sampler", "seed", 7)
    assert _keys(graph, registry)["decode"] == _keys(ungrouped, registry)["decode"]


def test_group_and_ungroup_undo_exactly_and_ungroup_gives_the_same_keys(registry):
    original = serialize.dumps(_txt2img(registry))
    graph, history, _ = _grouped(registry)
    grouped = serialize.dumps(graph)
    history.undo()
    assert serialize.dumps(graph) == original
    history.redo()
    assert serialize.dumps(graph) == grouped
    graph.set_param("trio", "steps", 9)
    before = _keys(graph, registry)["decode"]
    unpack = Ungroup("trio")
    history.push(unpack)
    assert set(unpack.node_ids) == set(TRIO) and "trio" not in graph.definitions
    assert graph.nodes["schedule"].params["steps"] == 9
    assert _keys(graph, registry)["decode"] == before
    assert validate(graph, registry) == []
    history.undo()
    assert serialize.dumps(graph) != original and "trio" in graph.nodes


def test_a_grouped_run_is_served_from_the_ungrouped_runs_cache(registry, tmp_path):
    executor = Executor(registry)
    settings = RunSettings(device="cpu", output_dir=tmp_path)
    first = executor.run(_txt2img(registry), ["decode"], settings)
    graph, _, _ = _grouped(registry)
    events: list[dict] = []
    second = executor.run(graph, ["decode"], settings, events.append)
    assert first.status == second.status == "ok"
    assert second.ran == [] and second.cached == ["decode"]
    assert (first.outputs["decode"]["image"] == second.outputs["decode"]["image"]).all()
    trio = executor.run(graph, ["trio"], settings, events.append)
    assert trio.cached == ["trio__sampler"] and "latent" in trio.outputs["trio"]
    assert any(e.get("node") == "trio" and e["event"] == "cached" for e in events)


def test_problems_inside_are_said_on_the_instance(registry):
    graph, _, _ = _grouped(registry)
    graph.set_param("trio", "steps", 0)  # below the Scheduler's minimum
    problems = validate(graph, registry)
    assert [(p.node, p.where) for p in problems] == [("trio", "steps")]
    assert problems[0].message.startswith("inside, schedule:")
    graph.definitions.pop("trio")
    problems = validate(graph, registry)
    assert [p.node for p in problems] == ["trio"] and "no subgraph definition 'trio'" in problems[0].message


def test_the_ksampler_template_runs_as_its_typed_parts(registry, tmp_path):
    graph = _txt2img(registry)
    history = History(graph, registry)
    from app.graph.commands import AddNode, Batch, Connect, Remove

    add = AddNode("subgraph:ksampler", (0, 0), {"seed": 42, "steps": 20, "cfg": 7.5})
    history.push(add)
    ks = add.node_id
    wiring = [("model", "model", "model"), ("prompt", "conditioning", "positive"),
              ("negative", "conditioning", "negative"), ("latent", "latent", "latent_image")]  # fmt: skip
    history.push(
        Batch(
            "wire",
            [Remove(nodes=TRIO)]
            + [Connect(Edge(src, port, ks, dst)) for src, port, dst in wiring]
            + [Connect(Edge(ks, "latent", "decode", "latent"))],
        )
    )
    assert "ksampler" in graph.definitions  # the file carries the template it uses
    assert validate(graph, registry) == []
    plain = _keys(_txt2img(registry), registry)
    assert _keys(graph, registry)["decode"] == plain["decode"]  # KSampler = the shipped trio's settings
    result = Executor(registry).run(graph, ["decode"], RunSettings(device="cpu", output_dir=tmp_path))
    assert result.status == "ok"


def test_definition_versions(registry):
    graph, _, _ = _grouped(registry)
    data = json.loads(serialize.dumps(graph))
    newer = copy.deepcopy(data)
    newer["definitions"]["subgraphs"]["trio"]["version"] = 99
    with pytest.raises(serialize.GraphFileError, match="version 99 is newer"):
        serialize.from_dict(newer, registry)
    broken = copy.deepcopy(data)
    broken["definitions"]["subgraphs"]["trio"]["outputs"] = [{"name": "x", "from": ["nowhere", "latent"]}]
    with pytest.raises(serialize.GraphFileError, match="names a missing node 'nowhere'"):
        serialize.from_dict(broken, registry)


def test_the_shipped_ksampler_graph_sets_through_its_node_and_exports_as_a_comfyui_ksampler(registry):
    from app.interop.comfyui.export import export_api

    graph = serialize.load(ROOT / "graphs" / "ksampler.json", registry)
    graph.set_param("ksampler", "seed", 5)
    graph.set_param("ksampler", "cfg", 6.0)
    assert validate(graph, registry) == []
    prompt, _ = export_api(graph, registry)
    (sampler,) = [n for n in prompt.values() if n["class_type"] == "KSampler"]
    assert (sampler["inputs"]["seed"], sampler["inputs"]["cfg"], sampler["inputs"]["steps"]) == (5, 6.0, 20)
    plain = _txt2img(registry)
    plain.set_param("sampler", "seed", 5)
    plain.set_param("guidance", "scale", 6.0)
    assert _keys(graph, registry)["decode"] == _keys(plain, registry)["decode"]


def test_unlinked_inputs_and_unused_outputs_can_be_exposed(registry):
    graph = _txt2img(registry)
    graph.disconnect(graph.input_edge("sampler", "negative"))
    history = History(graph, registry)
    command = Group(TRIO, "trio", inputs=[("sampler", "negative"), ("sampler", "model")],
                    outputs=[("schedule", "schedule"), ("sampler", "latent")])  # fmt: skip
    history.push(command)
    definition = graph.definitions["trio"]
    assert definition.inputs["negative"] == (("sampler", "negative"),)
    assert definition.inputs["model"] == (("guidance", "model"), ("sampler", "model"))  # linked: once
    assert definition.outputs == {"latent": ("sampler", "latent"), "schedule": ("schedule", "schedule")}
    spec = (
        registry.get("subgraph:trio")
        or (registry.install(graph.definitions), registry.get("subgraph:trio"))[1]
    )
    assert {p.name: p.optional for p in spec.inputs}["negative"] is True
    assert validate(graph, registry) == []


def test_an_older_definition_is_migrated_on_load(registry, monkeypatch):
    """When the definition format moves on, MIGRATIONS lifts files written before: here a pretend v2 that
    renamed the exposed param `steps` to `count`."""
    from app.graph import subgraphs

    graph, _, _ = _grouped(registry)
    data = json.loads(serialize.dumps(graph))  # written as version 1

    def to_v2(raw):
        raw["params"] = [{**p, "name": "count" if p["name"] == "steps" else p["name"]} for p in raw["params"]]
        return raw

    monkeypatch.setattr(subgraphs, "VERSION", 2)
    monkeypatch.setitem(subgraphs.MIGRATIONS, 1, to_v2)
    loaded = serialize.from_dict(data, registry)
    assert set(loaded.definitions["trio"].params) == {"seed", "count"}
    assert json.loads(serialize.dumps(loaded))["definitions"]["subgraphs"]["trio"]["version"] == 2


def test_hostile_definitions_end_in_one_clear_problem(registry):
    """A subgraph that holds copies of itself would grow without end; a definition whose exposed names clash
    cannot get a spec. Each is named in one sentence, nothing hangs or raises."""
    loop = {
        "schema_version": 1,
        "nodes": {"x": {"type": "subgraph:boom", "params": {}}},
        "definitions": {"subgraphs": {"boom": {
            "nodes": {f"n{i}": {"type": "subgraph:boom", "params": {}} for i in range(12)},
            "edges": [], "inputs": [], "outputs": [], "params": []}}},
    }  # fmt: skip
    graph = serialize.from_dict(loop, registry)
    problems = validate(graph, registry)
    assert [p.node for p in problems] == ["x"] and "nested too deep, or expanding past" in problems[0].message
    clash = json.loads(serialize.dumps(_grouped(registry)[0]))
    trio = clash["definitions"]["subgraphs"]["trio"]
    trio["inputs"].append({"name": "seed", "to": [["schedule", "model"]]})  # "seed" is a param too
    trio["inputs"][-1]["to"] = [["guidance", "model"]]
    from app.registry import Registry

    fresh = Registry(registry.specs())
    loaded = serialize.from_dict(clash, fresh)
    problems = fresh.install(loaded.definitions)
    assert len(problems) == 1 and "seed" in problems[0]
