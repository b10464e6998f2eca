"""`nodeloom sweep` in a real subprocess: jobs on one warm worker, JSON events, the summary, mistakes."""

from __future__ import annotations

import json

from tests.cli.test_cli import ROOT, nodeloom

TXT2IMG = str(ROOT / "graphs" / "txt2img.json")
SMALL = [
    "--set",
    "schedule.steps=3",
    "--set",
    "latent.width=64",
    "--set",
    "latent.height=64",
    "--threads",
    "1",
]


def test_a_seed_and_prompt_sweep_writes_every_picture_once(tmp_path):
    done = nodeloom(
        "sweep", TXT2IMG, "--sweep", "sampler.seed=1..2", "--sweep", "prompt.text=a red circle,a blue square",
        *SMALL, "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "--json-events",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    summary = events[-1]
    assert summary["event"] == "sweep_done" and summary["jobs"] == 4 and summary["images"] == 4
    assert summary["nodes_cached"] > 0  # the model and the schedule were not made again
    values = [e["values"] for e in events if e["event"] == "job_done"]
    assert sorted((v["sampler.seed"], v["prompt.text"]) for v in values) == [
        (1, "a blue square"), (1, "a red circle"), (2, "a blue square"), (2, "a red circle")]  # fmt: skip
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


def test_sweep_mistakes_are_said_without_a_traceback(tmp_path):
    zip_first = nodeloom("sweep", TXT2IMG, "--zip", "prompt.text=a", "-o", str(tmp_path))
    assert zip_first.returncode == 2 and "--zip joins the --sweep before it" in zip_first.stderr
    bad = nodeloom("sweep", TXT2IMG, "--sweep", "sampler.seed=1,x", "-o", str(tmp_path))
    assert bad.returncode == 2 and "'sampler.seed': expected a whole number, got 'x'" in bad.stderr
    uneven = nodeloom(
        "sweep", TXT2IMG, "--sweep", "sampler.seed=1,2", "--zip", "prompt.text=a", "-o", str(tmp_path)
    )
    assert uneven.returncode == 2 and "one length" in uneven.stderr
    invalid = nodeloom("sweep", TXT2IMG, "--sweep", "schedule.steps=0,1", "-o", str(tmp_path))
    assert invalid.returncode == 2 and "schedule.steps" in invalid.stderr
    for process in (zip_first, bad, uneven, invalid):
        assert "Traceback" not in process.stderr
