"""The page's controls, derived from the components' property declarations.

- :func:`describe_types`: every registered component type with one control description
  per property (kind, default, doc, choices, and for numbers a slider range and step).
- :func:`range_errors`: the values a page edit may not take, as ``{property: message}``.

Slider ranges and hard limits are the ones the properties declare (``prop(low=, high=,
span=)``); colours are in [0, 1], and a lower bound may not be above its upper bound
(``min_x`` <= ``max_x``). The number fields accept any value within the hard limits, beyond
the slider.
"""

from __future__ import annotations

import math
import re
from typing import Any

from orrb.components.base import registry
from orrb.components.properties import PropertySpec, property_specs

__all__ = ["describe_types", "number_control", "range_errors"]

_MIN = re.compile(r"(^|_)min_")


def _nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= ``x`` (``x`` > 0)."""
    exponent = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10 ** exponent >= x - 1e-12:
            return float(m * 10 ** exponent)
    return float(10 ** (exponent + 1))


def number_control(spec: PropertySpec) -> dict[str, Any]:
    """Slider range, step and hard limits of an int or float property, from its declaration.

    The slider spans the declared ``span`` (the limits, when both are declared); without one,
    it reaches from 0 (or from minus the span, for a negative default) to a round number
    4x the default.

    Returns:
        ``{"min", "max", "step"}`` for the slider and ``"hard_min"`` / ``"hard_max"``
        (``None`` when unbounded) for the values accepted at all; ``"open_min"`` is True
        when ``hard_min`` itself is excluded.
    """
    default = float(spec.default)
    if spec.span is not None:
        lo, hi = float(spec.span[0]), float(spec.span[1])
    elif spec.kind == "int":
        hi = float(max(10, 2 * abs(int(default))))
        lo = 0.0 if spec.low is not None and spec.low >= 0 else -hi
    else:
        hi = _nice_ceiling(4 * abs(default)) if default else 1.0
        lo = 0.0 if default >= 0 or (spec.low is not None and spec.low >= 0) else -hi
    step = 1 if spec.kind == "int" else _nice_ceiling((hi - lo) / 1000.0)
    return {"min": lo, "max": hi, "step": step,
            "hard_min": None if spec.low is None else float(spec.low),
            "hard_max": None if spec.high is None else float(spec.high), "open_min": spec.low_open}


def _control(spec: PropertySpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "doc": spec.doc,
                           "default": list(spec.default) if isinstance(spec.default, tuple) else spec.default,
                           "choices": list(spec.choices) if spec.choices else None}
    if spec.kind in ("int", "float"):
        out.update(number_control(spec))
    return out


def describe_types() -> dict[str, dict[str, Any]]:
    """``{type_name: {"doc": first docstring line, "properties": [control, ...]}}`` of every
    registered component type, properties in declaration order."""
    out = {}
    for type_name, cls in sorted(registry().items()):
        doc = (cls.__doc__ or type_name).strip().splitlines()[0]
        out[type_name] = {"doc": doc, "structural": cls.needs_spec(),
                          "properties": [_control(s) for s in property_specs(cls.Properties).values()]}
    return out


def _number(value) -> str:
    """A number for a message: floats short (``:g``), ints whole (an int too large for a float too)."""
    return f"{value:g}" if isinstance(value, float) else str(value)[:40]


def range_errors(type_name: str, values: dict[str, Any]) -> dict[str, str]:
    """The hard-limit violations of a component's property values.

    Args:
        type_name: a registered component type.
        values: ``{property: python value}``, every property of the component (defaults
            filled in), already type-checked.

    Returns:
        ``{property: message}``; empty when every value is acceptable. A ``min_x`` above
        its ``max_x`` is reported on both.
    """
    specs = property_specs(registry()[type_name].Properties)
    errors: dict[str, str] = {}
    for name, value in values.items():
        spec = specs[name]
        if spec.kind in ("int", "float"):
            c = number_control(spec)
            lo, hi = c["hard_min"], c["hard_max"]
            if lo is not None and (value < lo or (c["open_min"] and value == lo)):
                bound = f"> {lo:g}" if c["open_min"] else f">= {lo:g}"
                errors[name] = f"{name} must be {bound}" + (f" and <= {hi:g}" if hi is not None else "") + \
                    f", got {_number(value)}"
            elif hi is not None and value > hi:
                errors[name] = f"{name} must be <= {hi:g}" + (f" and >= {lo:g}" if lo is not None else "") + \
                    f", got {_number(value)}"
        elif spec.kind == "color":
            if any(not 0.0 <= v <= 1.0 for v in value):
                errors[name] = f"{name}: r, g, b, a must be in [0, 1], got {list(value)}"
        elif spec.kind == "quaternion":
            if not any(value):
                errors[name] = f"{name}: a rotation quaternion must not be all zeros"
    for name, value in values.items():
        upper = _MIN.sub(r"\1max_", name, count=1)
        if upper != name and upper in values and name not in errors and specs[name].kind in ("int", "float"):
            if upper not in errors and value > values[upper]:
                message = f"{name} ({_number(value)}) must be <= {upper} ({_number(values[upper])})"
                errors[name] = errors[upper] = message
    return errors
