"""Typed component properties, declared once per component.

A component declares its properties as one frozen dataclass whose fields are made
with :func:`prop`; everything else derives from that declaration: parsing the
original JSON format (nine typed maps, camelCase or snake_case), defaults,
``update()`` merging, the unknown-property error with its close match,
serialization back to JSON, and the tuning page's controls (slider ranges, limits)::

    @dataclasses.dataclass(frozen=True)
    class Properties(RandomizerProperties):
        min_light_intensity: float = prop(1.0, "lower bound of a light's weight", low=0.0, span=(0.0, 10.0))
        mode: str = prop("Jitter", "how to move the camera", choices=("Jitter", "Orbit", "Both"))
        target: tuple = prop((0.0, 0.0, 0.0), "aim point (m, world)", kind="vector3")

Vectors are tuples; quaternions are ``(w, x, y, z)`` as in MuJoCo; colours
``(r, g, b, a)`` in [0, 1]. In JSON, vectors are written as ``{"x":.., "y":.., "z":..}``,
quaternions as ``{"x":.., "y":.., "z":.., "w":..}`` and colours as
``{"r":.., "g":.., "b":.., "a":..}`` (the original's protobuf JSON); plain lists are
accepted on input (quaternions in MuJoCo's w, x, y, z order).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from orrb.errors import ConfigError, did_you_mean

__all__ = ["KINDS", "Properties", "RandomizerProperties", "SECTIONS", "prop", "property_specs"]

# kind -> JSON section (camelCase, as the original wrote it)
KINDS: dict[str, str] = {
    "int": "intProperties",
    "float": "floatProperties",
    "string": "stringProperties",
    "bool": "boolProperties",
    "enum": "enumProperties",
    "vector2": "vector2Properties",
    "vector3": "vector3Properties",
    "quaternion": "quaternionProperties",
    "color": "colorProperties",
}


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out).replace("vector_2", "vector2").replace("vector_3", "vector3")


# section name (any accepted spelling) -> kind
SECTIONS: dict[str, str] = {}
for _kind, _section in KINDS.items():
    SECTIONS[_section] = _kind
    SECTIONS[_snake(_section)] = _kind  # float_properties, vector3_properties, ...

_VECTOR_KEYS = {"vector2": ("x", "y"), "vector3": ("x", "y", "z"), "quaternion": ("w", "x", "y", "z"),
                "color": ("r", "g", "b", "a")}


def prop(default: Any, doc: str, *, kind: str | None = None, choices: tuple[str, ...] | None = None,
         frame: str | None = None, low: float | None = None, high: float | None = None, low_open: bool = False,
         span: tuple[float, float] | None = None):
    """Declares one component property: its default, a one-line doc and its kind.

    The kind is inferred from the default (bool, int, float, str) unless given;
    tuples need ``kind`` (``vector2``, ``vector3``, ``quaternion``, ``color``);
    ``choices`` makes a string property an enum. ``frame`` says how a vector3 or
    quaternion value depends on the coordinate frame: ``"world"`` (a world point or
    direction) or ``"camera"`` (in a camera's own frame); config files in the original
    renderer's frame are converted accordingly on load (:mod:`orrb.frames`). ``None``:
    the value means the same in both frames.

    Numbers only: ``low`` / ``high`` are the limits the meaning fixes (a probability in
    [0, 1], a radius not negative; ``low_open``: ``low`` itself excluded, as for a field of
    view), ``None`` where there is none; ``span`` is the range of values in common use
    (a slider's range), by default the limits when both are given. The limits are
    advisory, as in the original renderer, which takes any number: the tuning page refuses
    edits outside them and warns of a file outside them.
    """
    if kind is None:
        if choices is not None:
            kind = "enum"
        elif isinstance(default, bool):
            kind = "bool"
        elif isinstance(default, int):
            kind = "int"
        elif isinstance(default, float):
            kind = "float"
        elif isinstance(default, str):
            kind = "string"
        else:
            raise TypeError(f"prop: cannot infer the kind of default {default!r}; pass kind=")
    if kind not in KINDS:
        raise TypeError(f"prop: unknown kind {kind!r}; accepted: {sorted(KINDS)}")
    if frame is not None and (frame not in ("world", "camera") or kind not in ("vector3", "quaternion")):
        raise TypeError(f"prop: frame {frame!r} on a {kind} property; accepted: 'world' or 'camera' "
                        "on vector3 and quaternion properties")
    if kind not in ("int", "float") and (low is not None or high is not None or low_open or span is not None):
        raise TypeError(f"prop: limits or a span on a {kind} property; only int and float properties have them")
    if span is None and low is not None and high is not None:
        span = (low, high)
    if span is not None and not span[0] < span[1]:
        raise TypeError(f"prop: span must be (lo, hi) with lo < hi, got {span!r}")
    return dataclasses.field(default=default, metadata={"doc": doc, "kind": kind, "choices": choices,
                                                        "frame": frame, "low": low, "high": high,
                                                        "low_open": low_open, "span": span})


@dataclasses.dataclass(frozen=True)
class PropertySpec:
    """One declared property (:func:`prop`)."""

    name: str
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] | None
    frame: str | None = None
    low: float | None = None  # numbers: the limits the meaning fixes (None: unbounded)
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    span: tuple[float, float] | None = None  # numbers: the range in common use (None: from the default)


@dataclasses.dataclass(frozen=True)
class Properties:
    """Properties every component accepts."""

    enabled: bool = prop(True, "false skips the component without removing it")


@dataclasses.dataclass(frozen=True)
class RandomizerProperties(Properties):
    """Properties every randomizer accepts."""

    emit_values: bool = prop(False, "emit the drawn values as float streams <name>_<quantity>")


_SPECS_CACHE: dict[type, dict[str, PropertySpec]] = {}


def property_specs(cls: type) -> dict[str, PropertySpec]:
    """Returns ``{name: PropertySpec}`` for a properties dataclass (cached)."""
    specs = _SPECS_CACHE.get(cls)
    if specs is None:
        specs = {
            f.name: PropertySpec(f.name, f.metadata["kind"], f.default, f.metadata["doc"], f.metadata["choices"],
                                 f.metadata["frame"], f.metadata["low"], f.metadata["high"], f.metadata["low_open"],
                                 f.metadata["span"])
            for f in dataclasses.fields(cls)
        }
        _SPECS_CACHE[cls] = specs
    return specs


def coerce(spec: PropertySpec, value: Any, where: str) -> Any:
    """Checks and converts one value to the Python form of ``spec``'s kind.

    Raises:
        ConfigError: naming ``where``, the property, the expected kind and the value.
    """
    kind = spec.kind

    def bad(expected: str):
        return ConfigError(f"{where}: property {spec.name!r} expects {expected}, got {value!r}")

    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise bad("a bool (true/false)")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("an int")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise bad("an int")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if kind == "string":
        if isinstance(value, str):
            return value
        raise bad("a string")
    if kind == "enum":
        if isinstance(value, str) and value in spec.choices:
            return value
        raise bad(f"one of {list(spec.choices)}")
    keys = _VECTOR_KEYS[kind]
    if isinstance(value, dict):
        unknown = set(value) - set(keys)
        if unknown:
            raise bad(f"an object with keys {list(keys)}")
        if kind == "quaternion":
            values = [value.get("w", 1.0), value.get("x", 0.0), value.get("y", 0.0), value.get("z", 0.0)]
        elif kind == "color":
            values = [value.get("r", 0.0), value.get("g", 0.0), value.get("b", 0.0), value.get("a", 1.0)]
        else:
            values = [value.get(k, 0.0) for k in keys]
    elif isinstance(value, (list, tuple)):
        values = list(value)
        if kind == "color" and len(values) == 3:
            values.append(1.0)
    else:
        raise bad(f"{len(keys)} numbers ({', '.join(keys)})")
    if len(values) != len(keys) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise bad(f"{len(keys)} finite numbers ({', '.join(keys)})")
    return tuple(float(v) for v in values)


def to_json_value(kind: str, value: Any) -> Any:
    """The JSON form of a Python property value (see the module docstring)."""
    if kind in ("vector2", "vector3"):
        return dict(zip(_VECTOR_KEYS[kind], value))
    if kind == "quaternion":
        w, x, y, z = value
        return {"x": x, "y": y, "z": z, "w": w}
    if kind == "color":
        return dict(zip(_VECTOR_KEYS[kind], value))
    return value


def parse_sections(cls: type, config: Any, where: str) -> dict[str, Any]:
    """Parses a component's ``config`` object (the nine typed maps) into ``{name: value}``.

    Raises:
        ConfigError: for an unknown section, an unknown property (with the close
            match and the accepted names) or a value of the wrong type.
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: 'config' must be an object of typed property maps, got {config!r}")
    specs = property_specs(cls)
    values: dict[str, Any] = {}
    for section, entries in config.items():
        kind = SECTIONS.get(section)
        if kind is None:
            raise ConfigError(
                f"{where}: unknown property map {section!r}{did_you_mean(section, KINDS.values())}; "
                f"accepted: {list(KINDS.values())} (snake_case spellings too)"
            )
        if not isinstance(entries, dict):
            raise ConfigError(f"{where}: {section!r} must be an object of name: value, got {entries!r}")
        for name, value in entries.items():
            spec = specs.get(name)
            if spec is None:
                raise ConfigError(
                    f"{where}: no property {name!r}{did_you_mean(name, specs)}; accepted: {sorted(specs)}"
                )
            numeric = {"int", "float"}
            if spec.kind != kind and not (spec.kind in numeric and kind in numeric) and not (
                {spec.kind, kind} == {"enum", "string"}
            ):
                raise ConfigError(
                    f"{where}: property {name!r} is a {spec.kind} property (in {KINDS[spec.kind]}), "
                    f"not in {section!r}"
                )
            values[name] = coerce(spec, value, where)
    return values


def check_values(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Validates ``{name: python value}`` edits made in Python; returns the coerced values."""
    specs = property_specs(cls)
    out = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            raise ConfigError(f"{where}: no property {name!r}{did_you_mean(name, specs)}; accepted: {sorted(specs)}")
        if spec.kind == "quaternion" and isinstance(value, (list, tuple)):
            value = tuple(value)
        out[name] = coerce(spec, value, where)
    return out


def to_sections(cls: type, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Writes ``{name: value}`` back into the typed maps (camelCase section names)."""
    specs = property_specs(cls)
    sections: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        kind = specs[name].kind
        sections.setdefault(KINDS[kind], {})[name] = to_json_value(kind, value)
    return sections
