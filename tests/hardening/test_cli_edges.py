"""Settings, signals, paths and odd model folders at the command line: one clear line, a documented exit
code (0, 2, 3, 4, 130), never a traceback or a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.graph import pngmeta

ROOT = Path(__file__).resolve().parents[2]


def nodeloom(
    *args: str, env: dict | None = None, cwd: Path = ROOT, timeout: int = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _clean(run: subprocess.CompletedProcess, code: int) -> None:
    assert run.returncode == code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout


@pytest.mark.parametrize("value", ["inf", "-5", "nan", "lots"])
def test_cache_size_settings_must_be_finite_and_positive(tmp_path, value):
    for variable in ("NODELOOM_DISK_CACHE_MB", "NODELOOM_MEMORY_CACHE_MB"):
        run = nodeloom("run", "graphs/shapes.json", "-o", str(tmp_path), env={variable: value})
        _clean(run, 2)
        assert variable in run.stderr


def test_a_closed_pipe_ends_quietly():
    shell = subprocess.run(
        f"{sys.executable} -m app nodes --json | head -c 10",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr


def test_render_graph_refuses_silly_sizes_and_unwritable_outputs(tmp_path):
    _clean(nodeloom("render-graph", "graphs/shapes.json", "-o", str(tmp_path / "a.png"), "--width", "0"), 2)
    unwritable = nodeloom("render-graph", "graphs/shapes.json", "-o", "/proc/no/such.png")
    _clean(unwritable, 4)
    assert "cannot write /proc/no/such.png" in unwritable.stderr


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_reports_cancelled_and_exits_130(tmp_path, how):
    command = [sys.executable, "-m", "app", "run", "graphs/txt2img.json", "--json-events", "--no-disk-cache"]
    command += ["--set", "schedule.steps=1000", "--device", "cpu", "-o", str(tmp_path)]
    command += ["--set", "latent.width=256", "--set", "latent.height=256"]  # a run of half a minute or more
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test run in the background (a CI job under `&`) inherits SIGINT ignored, and a
        # process that starts with SIGINT ignored rightly keeps ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if '"progress"' in line:
            break
    process.send_signal(how)
    out, err = process.communicate(timeout=60)
    events = [json.loads(line) for line in (lines + out.splitlines()) if line.strip()]
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert events[-1] == {"event": "cancelled", "node": "sampler"}


def test_an_image_param_may_not_name_a_folder_or_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    for value in (str(tmp_path), str(tmp_path / "pipe.png")):
        run = nodeloom("validate", "graphs/img2img.json", "--set", f"load.path={value}", timeout=30)
        _clean(run, 3)
        assert "not a file" in run.stderr


def test_a_graph_from_someone_elses_png_reads_no_file_outside_its_folder(tmp_path):
    from app.graph import serialize

    graph = json.loads((ROOT / "graphs" / "img2img.json").read_text())
    png = (ROOT / "assets" / "examples" / "shape.png").read_bytes()
    secret = tmp_path / "elsewhere" / "secret.png"  # neither beside the graph nor in the working folder
    secret.parent.mkdir()
    secret.write_bytes(png)
    graph["nodes"]["load"]["params"]["path"] = str(secret)  # absolute
    received = tmp_path / "downloads" / "nice.png"
    received.parent.mkdir()
    received.write_bytes(pngmeta.add_text(png, {serialize.PNG_KEY: json.dumps(graph)}))
    work = tmp_path / "work"
    work.mkdir()
    refused = nodeloom("validate", str(received), cwd=work)
    _clean(refused, 3)
    assert "outside the graph's folders" in refused.stderr and "--allow-outside-paths" in refused.stderr
    _clean(nodeloom("validate", str(received), "--allow-outside-paths", cwd=work), 0)


@pytest.mark.parametrize("config", ["../../etc", "/etc", "a/b", ".."])
def test_config_names_stay_inside_the_config_folders(tmp_path, config):
    from tests.cli.test_models import header_only

    key = "cond_stage_model.transformer.text_model.final_layer_norm.weight"  # an SD1.x single file
    header_only(tmp_path / "checkpoints" / "one.safetensors", {key: [768]})
    env = {"NODELOOM_MODEL_ROOTS": str(tmp_path)}
    sets = ["--set", "model.checkpoint=one.safetensors", "--set", f"model.config={config}"]
    run = nodeloom("validate", "graphs/txt2img.json", *sets, env=env)
    _clean(run, 3)
    assert "must be the name of a skeleton folder, not a path" in run.stderr


def test_cli_output_has_no_library_progress_bars_or_notices(tmp_path):
    run = nodeloom(
        "run", "graphs/txt2img.json", "--set", "schedule.steps=2", "--no-disk-cache", "-o", str(tmp_path)
    )
    _clean(run, 0)
    assert "Loading weights" not in run.stderr and "torchvision" not in run.stderr
