"""Model manager: one load per checkpoint and precision, events for load/free, LRU freeing beyond the limit."""

from __future__ import annotations

import torch

from app.runtime.checkpoints import weights_fingerprint
from app.runtime.models import ModelManager
from app.runtime.values import CheckpointSource
from tools.make_tiny_random_model import write


def test_loads_once_reports_events_and_frees_the_least_recently_used(tmp_path):
    sources = []
    for seed in (0, 1, 2):
        path = write(tmp_path / f"m{seed}", seed=seed)
        sources.append(CheckpointSource(str(path), weights_fingerprint(path)))
    manager = ModelManager(max_loaded=2)
    events: list[dict] = []
    manager.add_listener(events.append)
    cpu = torch.device("cpu")
    first = manager.load(sources[0], cpu)
    assert manager.load(sources[0], cpu) is first
    assert [e["action"] for e in events] == ["load"]
    assert events[0]["precision"] == "fp32" and events[0]["path"] == sources[0].path
    manager.load(sources[1], cpu)
    manager.load(sources[0], cpu)  # touch: source 1 becomes the least recently used
    manager.load(sources[2], cpu)
    assert [(e["action"], e["path"]) for e in events[-2:]] == [
        ("load", sources[2].path),
        ("free", sources[1].path),
    ]
    assert manager.loaded() == [sources[0], sources[2]]
    assert first.denoiser.dtype == torch.float32 and first.vae.dtype == torch.float32
    assert not any(p.requires_grad for p in first.denoiser.parameters())
    assert first.on("unet", cpu) is first.denoiser
    manager.free()
    assert manager.loaded() == []


def test_a_changed_file_is_a_new_entry(tmp_path):
    path = write(tmp_path / "m", seed=0)
    manager = ModelManager()
    before = manager.load(CheckpointSource(str(path), weights_fingerprint(path)), torch.device("cpu"))
    write(path, seed=3)
    after = manager.load(CheckpointSource(str(path), weights_fingerprint(path)), torch.device("cpu"))
    assert after is not before
    assert not torch.equal(next(after.denoiser.parameters()), next(before.denoiser.parameters()))
