"""`nodeloom nodes`, `nodeloom models` and `nodeloom schema`: what this install offers (node types, the models
under every model root, the graph file schema). Reads headers only; never imports torch or Qt."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.files import MODEL_FOLDERS, FileResolver
from app.graph.schema import graph_schema
from app.registry import Registry

EXIT_OK = 0


def add_parsers(commands: Any) -> None:
    listing = commands.add_parser("nodes", help="list the node types")
    listing.add_argument("--json", action="store_true", help="print full specs as JSON")

    commands.add_parser("schema", help="print the JSON Schema of graph files")

    models = commands.add_parser(
        "models", help="list the models under every model root, per kind and family (headers only)"
    )
    models.add_argument("--kind", action="append", choices=tuple(MODEL_FOLDERS), help="only this kind")
    models.add_argument("--json", action="store_true", help="print one JSON object per model")


def cmd_nodes(args: argparse.Namespace, registry: Registry) -> int:
    specs = registry.specs()
    if args.json:
        print(json.dumps([s.to_json() for s in specs], indent=2, ensure_ascii=False))
        return EXIT_OK
    width = max(len(s.type) for s in specs)
    for spec in specs:
        print(f"{spec.type:<{width}}  {spec.category:<12} {spec.title}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, registry: Registry) -> int:
    print(json.dumps(graph_schema([s.type for s in registry.specs()]), indent=2))
    return EXIT_OK


def cmd_models(args: argparse.Namespace, registry: Registry) -> int:
    from app.runtime import inventory

    resolver = FileResolver()
    entries = inventory.scan(resolver, tuple(args.kind or MODEL_FOLDERS))
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return EXIT_OK
    roots = ", ".join(str(r) for r in resolver.model_roots)
    print(f"model roots, first wins: {roots}")
    for root in resolver.model_roots:
        mine = [e for e in entries if e.root == str(root)]
        if not mine:
            continue
        print(root)
        for kind in MODEL_FOLDERS:
            rows = [e for e in mine if e.kind == kind]
            if rows:
                print(f"  {kind}")
                width = max(len(e.name) for e in rows)
                for entry in rows:
                    print(f"    {entry.name:<{width}}  {entry.family:<12} {entry.detail}")
    if not entries:
        print("no models found (set $NODELOOM_MODEL_ROOTS or model_roots in the config file)")
    return EXIT_OK
