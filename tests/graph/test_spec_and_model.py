"""Specs, params and the graph model: declarations, value checks, readable ids, refused links."""

from __future__ import annotations

import pytest

from app.graph import types as T
from app.graph.model import Edge, Graph, Node, can_connect
from app.graph.spec import Output, Param, node


def test_param_check_and_parse_follow_declared_type():
    steps = Param("steps", T.INT, 20, min=1, max=150)
    assert steps.check(20) is None
    assert "below the minimum" in steps.check(0)
    assert "whole number" in steps.check(2.5)
    assert "whole number" in steps.check(True)
    assert steps.parse("42") == 42
    with pytest.raises(ValueError, match="whole number"):
        steps.parse("many")
    scale = Param("scale", T.FLOAT, 7.5, min=0.0)
    assert scale.check(3) is None and scale.normalise(3) == 3.0 and isinstance(scale.normalise(3), float)
    assert "finite" in scale.check(float("nan"))
    choice = Param("scheduler", T.STRING, "ddim", choices=("ddim", "euler"))
    assert "not one of" in choice.check("heun")
    flag = Param("tiled", T.BOOL, False)
    assert flag.parse("yes") is True and flag.parse("off") is False
    seed = Param("seed", T.SEED, 0)
    assert seed.check(2**64 - 1) is None and seed.check(-1) is not None


def test_spec_refuses_bad_declarations():
    with pytest.raises(ValueError, match="default"):
        Param("steps", T.INT, 0, min=1)
    with pytest.raises(ValueError, match="twice"):

        @node("x.dup", title="Dup", category="t", params=[Param("a", T.INT, 0), Param("a", T.INT, 0)])
        def dup(ctx, a):
            return {}

    with pytest.raises(ValueError, match="unknown type"):

        @node("x.bad", title="Bad", category="t", outputs=[Output("o", "PICTURE")])
        def bad(ctx):
            return {}


def test_docstring_becomes_description():
    @node("x.doc", title="Doc", category="t")
    def documented(ctx):
        """Explains itself."""
        return {}

    assert documented.spec.description == "Explains itself."


def test_new_ids_are_readable_and_unique():
    graph = Graph()
    assert graph.new_id("diffusion.sampler") == "sampler"
    graph.add_node(Node("sampler", "diffusion.sampler"))
    assert graph.new_id("diffusion.sampler") == "sampler_2"
    with pytest.raises(ValueError, match="start with a letter"):
        graph.add_node(Node("1 bad id", "x"))
    with pytest.raises(ValueError, match="exists already"):
        graph.add_node(Node("sampler", "x"))


def test_can_connect_gives_reasons(counting):
    graph = Graph()
    for node_id, kind in [("a", "test.source"), ("b", "test.add"), ("c", "test.add"), ("m", "test.model")]:
        graph.add_node(Node(node_id, kind))
    specs = counting.registry
    assert can_connect(graph, specs, Edge("a", "value", "b", "a")) is None
    assert "is an input" in can_connect(graph, specs, Edge("b", "a", "c", "a"))
    assert "is an output" in can_connect(graph, specs, Edge("a", "value", "b", "value"))
    assert "type mismatch" in can_connect(graph, specs, Edge("m", "model", "b", "a"))
    assert "no input" in can_connect(graph, specs, Edge("a", "value", "b", "nope"))
    assert "itself" in can_connect(graph, specs, Edge("b", "value", "b", "a"))
    graph.connect(Edge("a", "value", "b", "a"))
    assert "already linked" in can_connect(graph, specs, Edge("a", "value", "b", "a"))
    graph.connect(Edge("b", "value", "c", "a"))
    assert "cycle" in can_connect(graph, specs, Edge("c", "value", "b", "b"))
    assert "cannot be fed" in can_connect(graph, specs, Edge("a", "value", "c", "offset"))


def test_graph_events_report_every_mutation():
    graph = Graph()
    seen = []
    unsubscribe = graph.subscribe(lambda kind, data: seen.append(kind))
    graph.add_node(Node("a", "x"))
    graph.add_node(Node("b", "x"))
    edge = graph.connect(Edge("a", "o", "b", "i"))
    graph.set_param("a", "p", 1)
    graph.set_mode("a", "bypass")
    graph.disconnect(edge)
    graph.connect(edge)
    graph.remove_node("b")
    unsubscribe()
    graph.add_node(Node("c", "x"))
    assert seen == [
        "node_added",
        "node_added",
        "edge_added",
        "param_changed",
        "node_changed",
        "edge_removed",
        "edge_added",
        "edge_removed",
        "node_removed",
    ]


def test_widening_rules():
    assert T.compatible(T.INT, T.FLOAT) and T.compatible(T.INT, T.SEED)
    assert not T.compatible(T.FLOAT, T.INT)
    assert T.compatible(T.IMAGE, T.ANY) and not T.compatible(T.IMAGE, T.LATENT)
    assert T.families_agree([None, "sd15", "sd15"]) == "sd15"
    with pytest.raises(ValueError, match="sd15, sdxl"):
        T.families_agree(["sdxl", "sd15"])


def test_latents_and_vaes_only_have_to_share_a_latent_space():
    assert T.inputs_agree([(T.MODEL, "sdxl_refiner"), (T.LATENT, "sdxl")]) == "sdxl_refiner"
    assert T.inputs_agree([(T.LATENT, "sd15"), (T.VAE, "sd")]) == "sd15"  # one VAE serves SD1.x and SD2
    assert T.inputs_agree([(T.MODEL, "sd2"), (T.VAE, "sd")]) == "sd2"
    with pytest.raises(ValueError, match="latent spaces differ: sd, sdxl"):
        T.inputs_agree([(T.LATENT, "sdxl"), (T.VAE, "sd")])
    with pytest.raises(ValueError, match="model families differ: sdxl, sdxl_refiner"):
        T.inputs_agree([(T.MODEL, "sdxl_refiner"), (T.CONDITIONING, "sdxl")])
    assert T.inputs_agree([(T.LATENT, "tiny-x"), (T.VAE, "tiny-x"), (T.IMAGE, None)]) == "tiny-x"


def test_a_param_used_only_with_some_values_of_another_names_it_and_is_listed():
    from app.graph.spec import NodeSpec, ParamSpec

    method = ParamSpec("method", T.STRING, "a", choices=("a", "b", "c"))
    extra = ParamSpec("extra", T.FLOAT, 1.0, when={"method": ("b", "c")})
    spec = NodeSpec("t.when", "When", "test", "", run=lambda ctx, **kw: {}, params=(method, extra))
    assert [p.name for p in spec.shown_params({"method": "a"})] == ["method"]
    assert [p.name for p in spec.shown_params({"method": "c"})] == ["method", "extra"]
    assert [p.name for p in spec.shown_params({})] == ["method"]  # the default of `method` decides
    assert spec.controlling == {"method"} and extra.to_json()["when"] == {"method": ["b", "c"]}
    with pytest.raises(ValueError, match="depends on unknown mode"):
        NodeSpec(
            "t.bad",
            "Bad",
            "test",
            "",
            run=lambda ctx, **kw: {},
            params=(ParamSpec("x", T.INT, 0, when={"mode": ("on",)}),),
        )
