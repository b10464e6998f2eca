"""Node specs: weight-free declarations of what a node type takes, gives and lets the user set.

A node family (a module under nodes/) declares each node with the `node` decorator on its run function:

    @node("math.add", title="Add", category="math",
          outputs=[Output("value", FLOAT)],
          params=[Param("a", FLOAT, 0.0, linkable=True), Param("b", FLOAT, 0.0, linkable=True)])
    def add(ctx, a, b):
        "Adds two numbers."
        return {"value": a + b}

The run function receives a context (progress, cancellation, device...) and every input and param by
name, and returns a dict of outputs by name. The docstring is the node's description (editor tooltip).

Pure data: never import Qt or torch here.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.graph import types as T
from app.graph.codes import ProblemCode

PARAM_TYPES = (T.INT, T.FLOAT, T.STRING, T.BOOL, T.SEED)
SEED_MAX = 2**64 - 1

# What a path param points at: an input file to read ("image", "file"), or a model under a model root
# ("model:checkpoints", "model:vae", "model:loras", ...; see app/files.MODEL_FOLDERS). Files a node reads
# are fingerprinted into its cache key; a path kind outside these is not.
PATH_KINDS_READ = ("image", "file")


@dataclass(frozen=True)
class PortSpec:
    """An input or output socket: its name, socket type and tooltip. Optional inputs may stay empty.

    An output may name the inputs and params it depends on (`uses`); its cache key is then made of those
    alone, so a change to anything else re-runs this node but nothing downstream of that output (Load
    LoRA's MODEL does not change with `strength_clip`). None = everything.
    """

    name: str
    type: str
    description: str = ""
    optional: bool = False
    uses: tuple[str, ...] | None = None


Input = PortSpec
Output = PortSpec


@dataclass(frozen=True)
class ParamSpec:
    """A value the user sets on a node. A `linkable` param may also be fed by a link of its type."""

    name: str
    type: str
    default: Any
    description: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    linkable: bool = False
    multiline: bool = False
    path: str | None = None  # see PATH_KINDS_READ; None for plain values
    # Only used when another param has one of some values, {"method": ("pag", "seg")}: editors hide it
    # otherwise. Stored as ((param, values), ...); presentation only, the value is kept and keyed as always.
    when: Any = ()

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param {self.name!r}: type {self.type!r} is not one of {PARAM_TYPES}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        when = self.when.items() if isinstance(self.when, dict) else self.when
        object.__setattr__(self, "when", tuple((name, tuple(values)) for name, values in when))
        problem = self.check(self.default)
        if problem:
            raise ValueError(f"param {self.name!r}: default {self.default!r} is invalid: {problem}")

    def applies(self, params: dict[str, Any], defaults: dict[str, Any] | None = None) -> bool:
        """Whether this param is used with these values of the node's other params (see `when`)."""
        defaults = defaults or {}
        return all(params.get(name, defaults.get(name)) in values for name, values in self.when)

    @property
    def reads_file(self) -> bool:
        """Whether the param names a file the node reads (so its fingerprint joins the cache key)."""
        return self.path is not None and (self.path in PATH_KINDS_READ or self.path.startswith("model:"))

    def check(self, value: Any) -> Verdict | None:
        """Why `value` is not acceptable for this param (a str carrying its `code`), or None when it is."""
        kind = self.type
        wrong = ProblemCode.INVALID_INPUT_TYPE
        if kind == T.BOOL:
            return (
                None if isinstance(value, bool) else Verdict(f"expected true or false, got {value!r}", wrong)
            )
        if kind in (T.INT, T.SEED):
            if isinstance(value, bool) or not isinstance(value, int):
                return Verdict(f"expected a whole number, got {value!r}", wrong)
            low = 0 if kind == T.SEED and self.min is None else self.min
            high = SEED_MAX if kind == T.SEED and self.max is None else self.max
            return _range_problem(value, low, high)
        if kind == T.FLOAT:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return Verdict(f"expected a number, got {value!r}", wrong)
            if isinstance(value, int) and abs(value) > _FLOAT_MAX:
                return Verdict(
                    f"expected a number, got one too large for a float ({len(str(value))} digits)", wrong
                )
            if not math.isfinite(value):
                return Verdict(f"expected a finite number, got {value!r}", wrong)
            return _range_problem(value, self.min, self.max)
        if not isinstance(value, str):
            return Verdict(f"expected text, got {value!r}", wrong)
        if not _encodable(value):
            return Verdict("the text holds a lone UTF-16 surrogate, which no file can store", wrong)
        if self.choices is not None and value not in self.choices:
            return Verdict(
                f"{value!r} is not one of: {', '.join(self.choices)}", ProblemCode.VALUE_NOT_IN_LIST
            )
        return None

    def normalise(self, value: Any) -> Any:
        """The canonical form of an accepted value (ints given for FLOAT params become floats)."""
        if self.type == T.FLOAT and isinstance(value, int) and not isinstance(value, bool):
            return float(value) if abs(value) <= _FLOAT_MAX else value  # too large: `check` says so
        return value

    def parse(self, text: str) -> Any:
        """Parse command-line text into a value of this param's type (raises ValueError)."""
        kind = self.type
        if kind == T.BOOL:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {text!r}")
        if kind in (T.INT, T.SEED):
            try:
                return int(text.strip(), 0)
            except ValueError:
                raise ValueError(f"expected a whole number, got {text!r}") from None
        if kind == T.FLOAT:
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"expected a number, got {text!r}") from None
        return text

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default}
        for key in ("description", "min", "max", "step", "choices", "path"):
            value = getattr(self, key)
            if value not in (None, ""):
                data[key] = list(value) if key == "choices" else value
        if self.linkable:
            data["linkable"] = True
        if self.multiline:
            data["multiline"] = True
        if self.when:
            data["when"] = {name: list(values) for name, values in self.when}
        return data


_FLOAT_MAX = int(sys.float_info.max)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Verdict(str):
    """Why a value is refused: the sentence itself, plus its machine-readable `code` (app/graph/codes.py)."""

    code: ProblemCode

    def __new__(cls, message: str, code: ProblemCode) -> Verdict:
        verdict = super().__new__(cls, message)
        verdict.code = code
        return verdict


def _range_problem(value: float, low: float | None, high: float | None) -> Verdict | None:
    if low is not None and value < low:
        return Verdict(f"{value!r} is below the minimum {low!r}", ProblemCode.VALUE_SMALLER_THAN_MIN)
    if high is not None and value > high:
        return Verdict(f"{value!r} is above the maximum {high!r}", ProblemCode.VALUE_BIGGER_THAN_MAX)
    return None


Param = ParamSpec

RunFunction = Callable[..., dict[str, Any]]
# (params, families of the connected inputs by name) -> family of this node's outputs, or None.
FamilyFunction = Callable[[dict[str, Any], dict[str, str | None]], str | None]
# (params, families of the connected inputs by name) -> problems (each a plain sentence).
ValidateFunction = Callable[[dict[str, Any], dict[str, str | None]], list[str]]
MigrateFunction = Callable[[dict[str, Any], int], dict[str, Any]]


@dataclass(frozen=True)
class FileRef:
    """A file a node reads that no path param names (an embedding named inside a prompt): the param it
    came from, the path kind to resolve it as, and the file names to try in order."""

    param: str
    kind: str
    names: tuple[str, ...]


# (params not fed by links) -> the extra files the node reads; their fingerprints join its cache key.
ReadsFunction = Callable[[dict[str, Any]], list[FileRef]]
# (params, facts of the linked inputs by name) -> facts of this node's outputs plus what it needs itself
# (app/engine/resources.py: "weights", "peak", "flops"); for the run's memory and time estimate.
MeasureFunction = Callable[[dict[str, Any], dict[str, dict[str, float]]], dict[str, float]]


@dataclass(frozen=True)
class NodeSpec:
    """Everything the editor, the validator and the executor know about one node type."""

    type: str
    title: str
    category: str
    description: str
    run: RunFunction
    version: int = 1
    inputs: tuple[PortSpec, ...] = ()
    outputs: tuple[PortSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    volatile: bool = False  # always runs (e.g. reads a clock); shown as such in the editor
    output: bool = False  # a sink (save, preview): runs on every run, is a default target
    disk_cache: bool = True  # whether its outputs may be written to the on-disk cache
    migrate: MigrateFunction | None = None
    family: FamilyFunction | None = None
    validate: ValidateFunction | None = None
    reads: ReadsFunction | None = None
    measure: MeasureFunction | None = None
    _index: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for item in (*self.inputs, *self.params):
            if item.name in seen:
                raise ValueError(f"node {self.type!r}: input/param name {item.name!r} is used twice")
            seen.add(item.name)
        for port in (*self.inputs, *self.outputs):
            if port.type not in T.SOCKET_TYPES:
                raise ValueError(f"node {self.type!r}: port {port.name!r} has unknown type {port.type!r}")
        if len({p.name for p in self.outputs}) != len(self.outputs):
            raise ValueError(f"node {self.type!r}: two outputs share a name")
        for port in self.outputs:
            unknown = sorted(set(port.uses or ()) - seen)
            if unknown:
                raise ValueError(
                    f"node {self.type!r}: output {port.name!r} uses unknown {', '.join(unknown)}"
                )
        for param in self.params:
            unknown = sorted({name for name, _ in param.when} - {p.name for p in self.params})
            if unknown:
                raise ValueError(
                    f"node {self.type!r}: param {param.name!r} depends on unknown {', '.join(unknown)}"
                )
        self._index.update(
            inputs={p.name: p for p in self.inputs},
            outputs={p.name: p for p in self.outputs},
            params={p.name: p for p in self.params},
        )

    def shown_params(self, values: dict[str, Any]) -> list[ParamSpec]:
        """The params that apply to a node with these param values (see ParamSpec.when), in order."""
        defaults = {p.name: p.default for p in self.params}
        return [p for p in self.params if p.applies(values, defaults)]

    @property
    def controlling(self) -> frozenset[str]:
        """The params whose value decides whether others apply."""
        return frozenset(name for p in self.params for name, _ in p.when)

    def input(self, name: str) -> PortSpec | None:
        return self._index["inputs"].get(name)

    def output_port(self, name: str) -> PortSpec | None:
        return self._index["outputs"].get(name)

    def param(self, name: str) -> ParamSpec | None:
        return self._index["params"].get(name)

    def input_type(self, name: str) -> str | None:
        """Socket type of an input slot: a declared input, or a linkable param fed by a link."""
        port = self.input(name)
        if port is not None:
            return port.type
        param = self.param(name)
        if param is not None and param.linkable:
            return param.type
        return None

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def to_json(self) -> dict[str, Any]:
        """The spec as plain data (for `nodeloom nodes --json` and for tools)."""
        ports = [
            {"name": p.name, "type": p.type, "description": p.description, "optional": p.optional}
            for p in self.inputs
        ]
        return {
            "type": self.type,
            "title": self.title,
            "category": self.category,
            "description": self.description,
            "version": self.version,
            "inputs": ports,
            "outputs": [{"name": p.name, "type": p.type, "description": p.description} for p in self.outputs],
            "params": [p.to_json() for p in self.params],
            "volatile": self.volatile,
            "output": self.output,
        }


def node(
    type: str,
    *,
    title: str,
    category: str,
    inputs: Sequence[PortSpec] = (),
    outputs: Sequence[PortSpec] = (),
    params: Sequence[ParamSpec] = (),
    description: str | None = None,
    version: int = 1,
    volatile: bool = False,
    output: bool = False,
    disk_cache: bool = True,
    migrate: MigrateFunction | None = None,
    family: FamilyFunction | None = None,
    validate: ValidateFunction | None = None,
    reads: ReadsFunction | None = None,
    measure: MeasureFunction | None = None,
) -> Callable[[RunFunction], RunFunction]:
    """Declare a node type on its run function; the registry collects functions carrying `.spec`."""

    def wrap(run: RunFunction) -> RunFunction:
        text = description if description is not None else inspect.getdoc(run) or ""
        run.spec = NodeSpec(  # type: ignore[attr-defined]
            type=type,
            title=title,
            category=category,
            description=text,
            run=run,
            version=version,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            params=tuple(params),
            volatile=volatile,
            output=output,
            disk_cache=disk_cache,
            migrate=migrate,
            family=family,
            validate=validate,
            reads=reads,
            measure=measure,
        )
        return run

    return wrap
