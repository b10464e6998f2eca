"""Constant values: one node per scalar type, for feeding linkable params (seed, steps, prompts)."""

from __future__ import annotations

from typing import Any

from app.graph import types as T
from app.graph.spec import Output, Param, node


def _constant(kind: str, socket: str, default: Any, title: str, multiline: bool = False):
    @node(
        f"value.{kind}",
        title=title,
        category="values",
        outputs=[Output("value", socket)],
        params=[
            Param(
                "value",
                socket,
                default,
                description=f"The {title.lower()} this node gives.",
                multiline=multiline,
            )
        ],
        description=f"A constant {title.lower()}: link it into any {socket} input or linkable param.",
    )
    def constant(ctx, value):
        return {"value": value}

    return constant


integer = _constant("int", T.INT, 0, "Integer")
number = _constant("float", T.FLOAT, 0.0, "Float")
text = _constant("string", T.STRING, "", "Text", multiline=True)
boolean = _constant("bool", T.BOOL, False, "Boolean")
seed = _constant("seed", T.SEED, 0, "Seed")
