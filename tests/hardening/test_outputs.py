"""Output files: concurrent runs into one folder never overwrite each other; prefixes stay inside it."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

from app.engine.plan import validate
from app.fsutil import write_numbered
from app.graph import serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]


def _write_many(args: tuple[str, int]) -> list[str]:
    folder, index = args
    return [str(write_numbered(Path(folder), "img", ".png", f"{index}-{n}".encode())) for n in range(5)]


def test_many_processes_writing_one_folder_get_distinct_files(tmp_path):
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        written = [
            path for paths in pool.map(_write_many, [(str(tmp_path), i) for i in range(6)]) for path in paths
        ]
    assert len(set(written)) == 30
    contents = {Path(p).read_bytes() for p in written}
    assert len(contents) == 30  # nothing was overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"img_{n:05d}.png" for n in range(1, 31)]


def test_concurrent_cli_runs_each_keep_their_image(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "app", "run", "graphs/shapes.json", "--no-disk-cache", "-o", str(out)]
    runs = [  # five different pictures (the same picture is written once: Save Image de-duplicates)
        subprocess.Popen(
            [*command, "--set", f"shape.width={64 + 8 * i}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(5)
    ]
    reported = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        reported.append(stdout.decode().strip())
    assert len(set(reported)) == 5 and sorted(Path(p).name for p in reported) == sorted(
        p.name for p in out.glob("*.png")
    )


def test_a_prefix_with_glob_characters_does_not_overwrite_its_last_image(tmp_path):
    for _ in range(2):
        write_numbered(tmp_path, "x[1]", ".png", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x[1]_00001.png", "x[1]_00002.png"]


def test_a_prefix_may_not_leave_the_output_folder():
    registry = default_registry()
    graph = serialize.load(ROOT / "graphs" / "shapes.json", registry)
    for prefix in ("../escape", "/tmp/abs", "a/b", "..", "", "a\nb", "p" * 101):
        graph.set_param("save", "prefix", prefix)
        problems = [str(p) for p in validate(graph, registry)]
        assert len(problems) == 1 and problems[0].startswith("node 'save'"), (prefix, problems)
    graph.set_param("save", "prefix", "fine name [v2]")
    assert validate(graph, registry) == []


def test_write_numbered_leaves_no_temporary_file_behind(tmp_path):
    write_numbered(tmp_path, "a", ".png", b"1")
    assert [p.name for p in tmp_path.iterdir()] == ["a_00001.png"]
