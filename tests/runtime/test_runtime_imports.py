"""torch stays out of editor/CLI start: the node registry and the torch-free runtime modules import without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = (
    "app.runtime.values",
    "app.runtime.checkpoints",
    "app.runtime.schedulers",
    "app.runtime.guidance",
    "app.runtime.text",
    "app.runtime.device",
    "app.runtime.seeding",
    "app.runtime.preview",
    "app.runtime.sampling",
    "app.runtime.models",
    "app.runtime.provenance",
)


def test_registry_all_nodes_and_runtime_modules_import_without_torch():
    code = (
        "import sys, importlib\n"
        "from app.registry import discover\n"
        "registry = discover('nodes')\n"
        "assert 'sampling.sampler' in registry and 'model.checkpoint' in registry\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "print(' '.join(m for m in ('torch', 'diffusers', 'transformers', 'PySide6') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == []


def test_validating_the_shipped_graphs_does_not_import_torch():
    code = (
        "import sys\n"
        "from app.cli import main\n"
        "for name in ('txt2img', 'img2img', 'guidance_pag', 'guidance_rcfg'):\n"
        "    assert main(['validate', f'graphs/{name}.json']) == 0, name\n"
        "print('HEAVY:' + ','.join(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.stdout.strip().splitlines()[-1] == "HEAVY:"
