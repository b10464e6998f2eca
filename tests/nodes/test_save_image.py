"""Save Image: a folder inside the output folder, one file per picture and folder (an unchanged re-run names
the file it wrote before), nothing written by runs that do not save (Live edits), and every file whole."""

from __future__ import annotations

from pathlib import Path

from app.engine.context import RunSettings
from app.engine.executor import Executor
from app.engine.plan import validate
from app.graph import serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]


def _graph(**save):
    registry = default_registry()
    graph = serialize.load(ROOT / "graphs" / "shapes.json", registry)
    for name, value in save.items():
        graph.set_param("save", name, value)
    return graph, registry


def _run(graph, registry, out, executor=None, save=True):
    events: list[dict] = []
    settings = RunSettings(device="cpu", output_dir=out, save_outputs=save)
    result = (executor or Executor(registry)).run(graph, settings=settings, on_event=events.append)
    assert result.status == "ok", result.errors
    return events


def test_files_go_into_the_folder_once_per_picture(tmp_path):
    graph, registry = _graph(folder="renders/today")
    executor = Executor(registry)
    first = _run(graph, registry, tmp_path, executor)
    again = _run(graph, registry, tmp_path, executor)
    written = [e for e in first if e["event"] == "output"]
    named = [e for e in again if e["event"] == "output"]
    assert [Path(e["path"]).parent for e in written] == [tmp_path / "renders" / "today"]
    assert [e["path"] for e in named] == [e["path"] for e in written] and named[0]["unchanged"]
    assert len(list((tmp_path / "renders" / "today").glob("*.png"))) == 1
    graph.set_param("save", "prefix", "other")  # another name asked for: another file
    _run(graph, registry, tmp_path, executor)
    graph.set_param("shape", "colour", "red")  # another picture: another file
    _run(graph, registry, tmp_path, executor)
    assert len(list((tmp_path / "renders" / "today").glob("*.png"))) == 3


def test_a_deleted_file_is_written_again(tmp_path):
    graph, registry = _graph()
    executor = Executor(registry)
    path = Path(next(e["path"] for e in _run(graph, registry, tmp_path, executor) if e["event"] == "output"))
    path.unlink()
    again = [e for e in _run(graph, registry, tmp_path, executor) if e["event"] == "output"]
    assert not again[0].get("unchanged") and Path(again[0]["path"]).is_file()


def test_runs_that_do_not_save_write_nothing(tmp_path):
    graph, registry = _graph()
    events = _run(graph, registry, tmp_path, save=False)
    assert not list(tmp_path.rglob("*.png")) and not [e for e in events if e["event"] == "output"]
    assert [e["node"] for e in events if e["event"] == "finished"] == ["shape", "save"]


def test_the_folder_stays_inside_the_output_folder():
    for folder in ("../out", "/tmp/abs", "a/../../b"):
        graph, registry = _graph(folder=folder)
        problems = [str(p) for p in validate(graph, registry)]
        assert problems == [
            f"node 'save': folder {folder!r} must be a folder inside the output folder (no absolute path, no '..')"
        ], problems
