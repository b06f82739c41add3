"""The page's controls, derived from the components' property declarations.

- :func:`describe_types`: every registered component type with one control description
  per property (kind, default, doc, choices, and for numbers a slider range and step).
- :func:`range_errors`: the values a page edit may not take, as ``{property: message}``.

Property declarations give a kind, a default and a one-line doc, not a range. Slider ranges
come from the default and from what the name and doc say of the unit (``(0-1)``, degrees,
a probability, a radius); hard limits only where the meaning fixes them: probabilities and
colours in [0, 1], radii, intensities, distances and counts not negative, a field of view
or cone angle in (0, 180) degrees, a lower bound not above its upper bound (``min_x`` <=
``max_x``). The number fields accept any value within the hard limits, beyond the slider.
"""

from __future__ import annotations

import math
import re
from typing import Any

from orrb.components.base import registry
from orrb.components.properties import PropertySpec, property_specs

__all__ = ["describe_types", "number_control", "range_errors"]

_DOC_RANGE = re.compile(r"\((-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\)")
_MIN = re.compile(r"(^|_)min_")
_UNIT_INTERVAL = ("saturation", "value", "metallic", "glossiness", "emission", "probability")


def _nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= ``x`` (``x`` > 0)."""
    exponent = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10 ** exponent >= x - 1e-12:
            return float(m * 10 ** exponent)
    return float(10 ** (exponent + 1))


def number_control(spec: PropertySpec) -> dict[str, Any]:
    """Slider range, step and hard limits of an int or float property.

    Returns:
        ``{"min", "max", "step"}`` for the slider and ``"hard_min"`` / ``"hard_max"``
        (``None`` when unbounded) for the values accepted at all; ``"open_min"`` is True
        when ``hard_min`` itself is excluded.
    """
    name, doc, default = spec.name, spec.doc.lower(), float(spec.default)
    bare = name.removeprefix("min_").removeprefix("max_")
    hard_min: float | None = None
    hard_max: float | None = None
    open_min = False
    lo, hi = None, None
    declared = _DOC_RANGE.search(doc)
    if declared:
        hard_min, hard_max = float(declared.group(1)), float(declared.group(2))
        lo, hi = hard_min, hard_max
    elif "probability" in name or (any(w in bare for w in _UNIT_INTERVAL) and not name.startswith("cg_")
                                   and not bare.endswith("radius")):
        hard_min, hard_max, lo, hi = 0.0, 1.0, 0.0, 1.0
        if "emission" in bare and "probability" not in name:
            hard_max = None  # emission may exceed 1 (a glow)
    elif "field_of_view" in name or "spotlight_angle" in name:
        hard_min, hard_max, open_min = 0.0, 180.0, True
        lo, hi = 1.0, 120.0
    elif "degrees" in doc and ("hue" in name or "rotation" in doc):
        lo, hi = -180.0, 180.0
    elif "(%)" in doc:
        lo, hi = -100.0, 100.0
    elif name.endswith("clip"):
        hard_min, open_min = 0.0, True
        lo, hi = (0.001, 1.0) if "near" in name else (1.0, 100.0)
    if hard_min is None and (name.endswith("radius") or "intensity" in name or "distance" in name
                             or name.endswith("count")):
        hard_min = 0.0
    if lo is None:
        if spec.kind == "int":
            lo, hi = (0.0, float(max(12, 2 * abs(int(default))))) if hard_min == 0.0 else (
                float(min(0, -2 * abs(int(default)))), float(max(10, 2 * abs(int(default)))))
        else:
            span = _nice_ceiling(4 * abs(default)) if default else 1.0
            lo = 0.0 if (hard_min == 0.0 or default >= 0) else -span
            hi = span
            if "degrees" in doc and default == 0:
                lo, hi = -20.0, 20.0
    step = 1 if spec.kind == "int" else _nice_ceiling((hi - lo) / 1000.0)
    return {"min": lo, "max": hi, "step": step, "hard_min": hard_min, "hard_max": hard_max, "open_min": open_min}


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
                    f", got {value:g}"
            elif hi is not None and value > hi:
                errors[name] = f"{name} must be <= {hi:g}" + (f" and >= {lo:g}" if lo is not None else "") + \
                    f", got {value:g}"
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
                message = f"{name} ({value:g}) must be <= {upper} ({values[upper]:g})"
                errors[name] = errors[upper] = message
    return errors
