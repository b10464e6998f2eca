"""House rules that hold in a fresh interpreter: no Qt or torch in the graph/engine layers or at CLI start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "diffusers", "transformers", "PySide6")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_graph_and_engine_import_no_qt_and_no_torch():
    code = (
        "import app.graph.model, app.graph.serialize, app.graph.schema, app.engine.executor, app.engine.keys"
    )
    assert _loaded_after(code) == []


def test_cli_and_every_node_family_import_without_torch_or_qt():
    code = "import app.cli\nfrom app.registry import default_registry\nassert len(default_registry()) > 5"
    assert _loaded_after(code) == []


def test_listing_models_reads_headers_without_torch():
    code = "from app.runtime import inventory\nentries = inventory.scan()\nassert entries"
    assert _loaded_after(code) == []


def test_no_source_file_under_graph_or_engine_imports_qt_or_torch():
    """Also the lazy imports inside functions (the subprocess tests only see module level)."""
    for folder in ("app/graph", "app/engine"):
        for path in (ROOT / folder).rglob("*.py"):
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] in ("import", "from"):
                    assert words[1].split(".")[0] not in HEAVY, f"{path}: {line.strip()}"


LAYER_RULES = {  # package -> packages it may never import (the layer order of docs/ARCHITECTURE.md)
    "app/graph": ("app.engine", "app.runtime", "app.ui", "nodes", "app.jobs"),
    "app/engine": ("app.runtime", "app.ui", "nodes", "app.jobs"),
    "app/jobs": ("app.runtime", "app.ui", "nodes", "torch", "PySide6"),
    "app/runtime": ("app.ui", "nodes"),
    "app/api": ("app.runtime", "app.ui", "nodes", "torch", "PySide6"),
    "app/interop": ("app.runtime", "app.ui", "nodes", "app.jobs", "torch", "PySide6"),
    "nodes": ("app.ui",),
}


def test_imports_only_point_down_the_layers():
    """Every import statement, lazy ones inside functions included."""
    import ast

    for folder, forbidden in LAYER_RULES.items():
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    assert not name.startswith(forbidden), f"{path.relative_to(ROOT)} imports {name}"
