"""`nodeloom serve` as a real process with real workers on the embedded model, driven by `nodeloom
submit / status / cancel`; the server is killed mid-sweep and started again on the same state folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

from tests.cli.test_cli import ROOT, nodeloom

TXT2IMG = str(ROOT / "graphs" / "txt2img.json")
SMALL = ["--set", "schedule.steps=3", "--set", "latent.width=64", "--set", "latent.height=64"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(state, port) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--state-dir", str(state), "--threads", "1",
         "--no-disk-cache"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1)
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(process.stderr.read())


def _client(state, port, *args):
    return nodeloom(*args, "--server", f"http://127.0.0.1:{port}", "--token-file", str(state / "token"))


def test_submit_status_cancel_and_a_restart_that_runs_the_dead_servers_job_again(tmp_path):
    state, port = tmp_path / "state", _port()
    server = _serve(state, port)
    try:
        made = _client(state, port, "submit", TXT2IMG, *SMALL, "--sweep", "sampler.seed=1..3", "--wait")
        assert made.returncode == 0, made.stderr
        lines = made.stdout.splitlines()
        assert lines[0].startswith("batch 1: jobs 1 2 3")
        assert sum(" done " in line and line.endswith(".png") for line in lines[1:]) == 3
        shown = _client(state, port, "status", "--batch", "1", "--json")
        views = [json.loads(line) for line in shown.stdout.splitlines()]
        assert [v["status"] for v in views] == ["done"] * 3 and all(
            os.path.isfile(v["outputs"][0]["path"]) for v in views
        )
        long = _client(state, port, "submit", TXT2IMG, "--set", "schedule.steps=1000", "--set", "latent.width=64",
                       "--set", "latent.height=64", "--sweep", "sampler.seed=1..3")  # fmt: skip
        assert long.returncode == 0 and long.stdout.startswith("batch 2: jobs 4 5 6")
        cancelled = _client(state, port, "cancel", "6")
        assert cancelled.stdout.strip() == "job 6: cancelled"
        for _ in range(300):
            if '"status": "running"' in _client(state, port, "status", "4", "--json").stdout:
                break
            time.sleep(0.1)
        os.killpg(server.pid, signal.SIGKILL)  # the server and its workers die mid-job
        server.wait()
        server = _serve(state, port)
        for _ in range(300):  # the job the dead server was running runs again
            view = json.loads(_client(state, port, "status", "4", "--json").stdout)
            if view["status"] == "running" and view["attempt"] == 2:
                break
            time.sleep(0.1)
        assert (view["status"], view["attempt"]) == ("running", 2)
        stop = _client(state, port, "cancel", "4")
        assert stop.returncode == 0
        missing = _client(state, port, "status", "99")
        assert missing.returncode == 3 and "no job 99" in missing.stderr
        unauthorized = nodeloom(
            "status", "--server", f"http://127.0.0.1:{port}", "--token-file", str(tmp_path / "x")
        )
        assert unauthorized.returncode == 2 and "cannot read the token" in unauthorized.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
    with sqlite3.connect(state / "jobs.sqlite3") as db:  # the server is gone: read its store directly
        rows = {row[0]: row[1:] for row in db.execute("SELECT id, status, attempt FROM jobs")}
    assert rows[4][0] == "cancelled" and rows[6][0] == "cancelled"
    assert "running" not in [status for status, _ in rows.values()]  # SIGTERM: jobs given back, then exit
    assert rows[5] in (("pending", 0), ("done", 1))  # a job stopped by a clean shutdown keeps its attempts
