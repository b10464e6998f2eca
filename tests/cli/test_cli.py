"""The nodeloom command in real subprocesses: events, exit codes, --set, disk cache across processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"
SHAPES = ROOT / "graphs" / "shapes.json"


def nodeloom(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=120
    )


def events(process: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in process.stdout.splitlines() if line.strip()]


def test_rerun_in_a_new_process_recomputes_nothing_and_writes_no_second_copy(tmp_path):
    cache, out = str(tmp_path / "cache"), str(tmp_path / "out")
    first = nodeloom("run", str(SHAPES), "--json-events", "--cache-dir", cache, "-o", out)
    assert first.returncode == 0, first.stderr
    assert [(e["event"], e["node"]) for e in events(first) if e["event"] in ("started", "cached")] == [
        ("started", "shape"),
        ("started", "save"),
    ]
    second = nodeloom("run", str(SHAPES), "--json-events", "--cache-dir", cache, "-o", out)
    kinds = [(e["event"], e["node"]) for e in events(second) if e["event"] in ("started", "cached")]
    assert kinds == [("cached", "shape"), ("started", "save")]
    outputs = [e for e in events(second) if e["event"] == "output"]  # the same picture: named, not rewritten
    assert len(outputs) == 1 and outputs[0]["path"].endswith("shape_00001.png") and outputs[0]["unchanged"]
    assert sorted(p.name for p in Path(out).glob("*.png")) == ["shape_00001.png"]
    third = nodeloom(
        "run", str(SHAPES), "--json-events", "--cache-dir", cache, "-o", out, "--set", "shape.width=48"
    )
    assert [e["path"] for e in events(third) if e["event"] == "output"][0].endswith("shape_00002.png")
    finished = [e for e in events(first) if e["event"] == "finished"]
    assert all(isinstance(e["duration"], float) for e in finished)


def test_set_changes_only_what_it_dirties_and_png_reopens_as_the_graph(tmp_path):
    cache, out = str(tmp_path / "cache"), str(tmp_path / "out")
    nodeloom("run", str(SHAPES), "--cache-dir", cache, "-o", out)
    changed = nodeloom(
        "run", str(SHAPES), "--json-events", "--cache-dir", cache, "-o", out, "--set", "shape.colour=green"
    )
    assert [e["node"] for e in events(changed) if e["event"] == "started"] == ["shape", "save"]
    png = next(e["path"] for e in events(changed) if e["event"] == "output")
    again = nodeloom("run", png, "--json-events", "--cache-dir", cache, "-o", out)
    assert again.returncode == 0, again.stderr
    assert [e["node"] for e in events(again) if e["event"] == "cached"] == ["shape"]  # same graph, green


def test_plain_output_lists_files_and_a_summary(tmp_path):
    run = nodeloom("run", str(SHAPES), "--no-disk-cache", "-o", str(tmp_path))
    assert run.returncode == 0
    assert run.stdout.strip().endswith("shape_00001.png")
    assert "ran shape" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--set", "shape.colour=pink"], 2, "'pink' is not one of"),
        (["--set", "shape.width=wide"], 2, "expected a whole number"),
        (["--set", "nobody.x=1"], 2, "has no node 'nobody'"),
        (["--set", "shape.nope=1"], 2, "has no param 'nope'"),
        (["--set", "colour"], 2, "expected NODE.PARAM=VALUE"),
        (["--set", "shape.width=4"], 2, "below the minimum 8"),
        (["--target", "ghost"], 3, "no such node to run"),
        (["--device", "gpu0"], 2, "'gpu0' is not a device"),
    ],
)
def test_user_mistakes_get_clear_messages_and_distinct_exit_codes(args, code, message, tmp_path):
    run = nodeloom("run", str(SHAPES), "--no-disk-cache", "-o", str(tmp_path), *args)
    assert run.returncode == code and message in run.stderr
    assert "Traceback" not in run.stderr


def test_invalid_graphs_exit_3_with_every_problem(tmp_path):
    graph = json.loads(SHAPES.read_text())
    graph["nodes"]["shape"]["params"]["size"] = 9.0
    graph["nodes"]["mystery"] = {"type": "vendor.thing", "version": 1, "params": {}}
    graph["nodes"]["load"] = {"type": "image.load", "version": 1, "params": {"path": "absent.png"}}
    graph["nodes"]["save2"] = {"type": "image.save", "version": 1, "params": {}}
    graph["edges"].append({"from": ["load", "image"], "to": ["save2", "image"]})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(graph))
    run = nodeloom("validate", str(path))
    assert run.returncode == 3
    assert "3 problems" in run.stderr
    for text in (
        "node 'shape' 'size': 9.0 is above the maximum 0.5",
        "unknown node type 'vendor.thing'",
        "node 'load' 'path': file not found: absent.png",
    ):
        assert text in run.stderr
    as_json = json.loads(nodeloom("validate", str(path), "--json").stdout)
    assert as_json["valid"] is False and len(as_json["problems"]) == 3
    run = nodeloom("run", str(path), "-o", str(tmp_path))
    assert run.returncode == 3 and "node 'shape' 'size'" in run.stderr and "Traceback" not in run.stderr
    (tmp_path / "broken.json").write_text("{nope")
    run = nodeloom("run", str(tmp_path / "broken.json"))
    assert run.returncode == 3 and "invalid JSON" in run.stderr


def test_runtime_errors_exit_4_naming_the_node(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    graph = {
        "schema_version": 1,
        "nodes": {
            "load": {"type": "image.load", "params": {"path": str(tmp_path / "fake.png")}},
            "save": {"type": "image.save"},
        },
        "edges": [{"from": ["load", "image"], "to": ["save", "image"]}],
    }
    (tmp_path / "g.json").write_text(json.dumps(graph))
    run = nodeloom("run", str(tmp_path / "g.json"), "--no-disk-cache", "-o", str(tmp_path))
    assert run.returncode == 4
    assert (
        "error in node 'load'" in run.stderr
        and "not an image" in run.stderr
        and "Traceback" not in run.stderr
    )


def test_nodes_schema_and_validate_commands():
    listing = json.loads(nodeloom("nodes", "--json").stdout)
    draw = next(n for n in listing if n["type"] == "shapes.draw")
    assert draw["params"][0]["choices"] == ["circle", "square", "triangle"]
    assert "shapes.draw" in nodeloom("nodes").stdout
    schema = json.loads(nodeloom("schema").stdout)
    assert schema["properties"]["schema_version"]["maximum"] == 1
    assert nodeloom("validate", str(SHAPES)).returncode == 0
    usage = nodeloom("frobnicate")
    assert usage.returncode == 2


def test_relative_inputs_resolve_in_the_graphs_folder_first_then_the_working_folder(tmp_path):
    import cv2
    import numpy as np

    from app.files import input_dirs

    graph_dir, work = tmp_path / "shared", tmp_path / "work"
    graph_dir.mkdir()
    work.mkdir()
    for folder, bgr in ((graph_dir, (0, 0, 255)), (work, (255, 0, 0))):  # red beside the graph, blue in cwd
        cv2.imwrite(str(folder / "pic.png"), np.full((8, 8, 3), bgr, np.uint8))
    cv2.imwrite(str(work / "only-here.png"), np.full((8, 8, 3), (0, 255, 0), np.uint8))
    graph = {
        "schema_version": 1,
        "nodes": {
            "load": {"type": "image.load", "version": 1, "params": {"path": "pic.png"}},
            "other": {"type": "image.load", "version": 1, "params": {"path": "only-here.png"}},
            "save": {"type": "image.save", "version": 1, "params": {"prefix": "a"}},
            "save2": {"type": "image.save", "version": 1, "params": {"prefix": "b"}},
        },
        "edges": [
            {"from": ["load", "image"], "to": ["save", "image"]},
            {"from": ["other", "image"], "to": ["save2", "image"]},
        ],
    }
    (graph_dir / "graph.json").write_text(json.dumps(graph))
    run = nodeloom(
        "run", str(graph_dir / "graph.json"), "--no-disk-cache", "-o", str(tmp_path / "out"), cwd=work
    )
    assert run.returncode == 0, run.stderr
    first, second = (cv2.imread(str(next((tmp_path / "out").glob(f"{p}_*.png")))) for p in ("a", "b"))
    assert tuple(first[0, 0]) == (0, 0, 255)  # the graph's own picture wins
    assert tuple(second[0, 0]) == (0, 255, 0)  # then the working folder
    assert input_dirs(graph_dir)[0] == graph_dir.resolve() and input_dirs(None) == (Path.cwd(), ASSETS)


def test_shipped_graphs_with_example_pictures_run_from_any_folder(tmp_path):
    run = nodeloom(
        "run", str(ROOT / "graphs" / "img2img.json"), "--set", "schedule.steps=2", "--no-disk-cache",
        "-o", str(tmp_path / "out"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert list((tmp_path / "out").glob("*.png"))


def test_validate_json_and_events_use_the_shared_vocabulary(tmp_path):
    from app.engine.events import EventKind, ProblemCode

    bad = json.loads(SHAPES.read_text())
    bad["nodes"]["shape"]["params"]["size"] = 9.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    report = nodeloom("validate", str(path), "--json")
    problems = json.loads(report.stdout)["problems"]
    assert report.returncode == 3 and [p["code"] for p in problems] == [ProblemCode.VALUE_BIGGER_THAN_MAX]
    run = nodeloom("run", str(SHAPES), "--json-events", "--no-disk-cache", "-o", str(tmp_path / "out"))
    assert run.returncode == 0 and {e["event"] for e in events(run)} <= set(EventKind)


def test_the_from_cache_line_names_subgraph_instances_not_their_inner_ids():
    from app.cli import _cached_names
    from app.graph import serialize
    from app.registry import default_registry

    graph = serialize.load(str(ROOT / "graphs" / "ksampler.json"), default_registry())
    cached = ["model", "ksampler__schedule", "ksampler__guidance", "decode"]
    assert _cached_names(graph, cached) == ["model", "ksampler (2 inside)", "decode"]
