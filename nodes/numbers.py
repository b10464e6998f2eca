"""Arithmetic on numbers, so params can be computed from other params (e.g. width * 2)."""

from __future__ import annotations

import math

from app.engine.context import NodeError
from app.graph import types as T
from app.graph.spec import Output, Param, node

OPERATIONS = ("add", "subtract", "multiply", "divide", "power", "minimum", "maximum")


@node(
    "math.binary",
    title="Math",
    category="values",
    outputs=[
        Output("value", T.FLOAT, "The result."),
        Output("int", T.INT, "The result rounded to a whole number."),
    ],
    params=[
        Param("operation", T.STRING, "add", choices=OPERATIONS, description="What to do with a and b."),
        Param("a", T.FLOAT, 0.0, linkable=True, description="First operand."),
        Param("b", T.FLOAT, 0.0, linkable=True, description="Second operand."),
    ],
)
def binary(ctx, operation, a, b):
    """Combines two numbers: add, subtract, multiply, divide, power, minimum or maximum."""
    a, b = float(a), float(b)
    if operation == "divide" and b == 0:
        raise NodeError("cannot divide by zero (b is 0)")
    result = {
        "add": lambda: a + b,
        "subtract": lambda: a - b,
        "multiply": lambda: a * b,
        "divide": lambda: a / b,
        "power": lambda: a**b,
        "minimum": lambda: min(a, b),
        "maximum": lambda: max(a, b),
    }[operation]()
    if not math.isfinite(result):
        raise NodeError(f"{operation} of {a} and {b} is not a finite number")
    return {"value": result, "int": int(round(result))}
