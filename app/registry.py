"""The node registry: finds node families under nodes/ and hands out their specs by type id.

A node family is a plain module under nodes/; every function in it that carries a `.spec` (set by
`app.graph.spec.node`) is a node. Importing a family must stay cheap: torch and diffusers are imported
inside run functions, never at module level (a test checks it), so the editor can list nodes at once.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from functools import lru_cache
from types import ModuleType
from typing import Any

from app.graph import subgraphs
from app.graph.spec import NodeSpec


class RegistryError(RuntimeError):
    """A node family that cannot be loaded or that declares a type twice."""


class Registry:
    """Node specs by type id. Call it with a type id to look a spec up (None if unknown)."""

    def __init__(self, specs: Iterable[NodeSpec] = ()) -> None:
        self._specs: dict[str, NodeSpec] = {}
        self.families: dict[str, list[str]] = {}
        self.subgraph_specs: dict[str, NodeSpec] = {}  # `subgraph:<name>` -> its instances' spec
        self.definitions: dict[str, Any] = {}  # the subgraphs it knows (templates, opened graphs'), by name
        for spec in specs:
            self.add(spec)

    def install(self, definitions: dict[str, Any]) -> list[str]:
        """Know these subgraph definitions (a later one of the same name replaces the earlier): their
        instances get specs, and search offers them. Returns why any could not be (unknown inner types...)."""
        problems = []
        for name, definition in definitions.items():
            try:
                spec = subgraphs.spec_for(definition, self.get)
            except ValueError as error:  # SubgraphError, or a spec that cannot be (a name used twice)
                problems.append(str(error))
                continue
            self.subgraph_specs[spec.type] = spec
            self.definitions[name] = definition
        return problems

    def add(self, spec: NodeSpec, family: str = "") -> None:
        if spec.type in self._specs:
            raise RegistryError(f"node type {spec.type!r} is declared twice")
        self._specs[spec.type] = spec
        self.families.setdefault(family, []).append(spec.type)

    def add_module(self, module: ModuleType) -> None:
        family = module.__name__.rsplit(".", 1)[-1]
        for value in vars(module).values():
            spec = getattr(value, "spec", None)
            if isinstance(spec, NodeSpec) and getattr(value, "__module__", None) == module.__name__:
                self.add(spec, family)

    def get(self, type_id: str) -> NodeSpec | None:
        return self._specs.get(type_id) or self.subgraph_specs.get(type_id)

    __call__ = get

    def __contains__(self, type_id: str) -> bool:
        return type_id in self._specs or type_id in self.subgraph_specs

    def __len__(self) -> int:
        return len(self._specs)

    def specs(self) -> list[NodeSpec]:
        """Every node type's spec, sorted by category then title."""
        return sorted(self._specs.values(), key=lambda s: (s.category, s.title))

    def offered(self) -> list[NodeSpec]:
        """What search and the Add Node menu offer: the node types, then the known subgraphs."""
        return [*self.specs(), *sorted(self.subgraph_specs.values(), key=lambda s: s.title)]


def discover(package: str = "nodes") -> Registry:
    """Import every module of `package` and collect its nodes."""
    registry = Registry()
    root = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as error:
            raise RegistryError(f"node family {name} failed to load: {error}") from error
        registry.add_module(module)
    return registry


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of the shipped node families and subgraph templates (loaded once per process)."""
    from app.graph import serialize

    registry = discover("nodes")
    registry.install(serialize.templates(registry))
    return registry
