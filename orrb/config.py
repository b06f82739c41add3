"""Configuration: what to render (``RemoteRendererConfig``), how (``RenderSettings``) and
with which component chain (``RendererConfig``, the original's JSON format).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from orrb.errors import ConfigError, did_you_mean

__all__ = ["ComponentSpec", "RemoteRendererConfig", "RenderSettings", "RendererConfig"]


@dataclasses.dataclass
class RenderSettings:
    """Quality/speed trade-offs of the render, as data. ``None`` keeps the model's own setting.

    Attributes:
        msaa_samples: multisample anti-aliasing samples (``model.vis.quality.offsamples``;
            MuJoCo's default is 4; 0 renders ~1.7x faster on a CPU).
        shadows: draw shadows of shadow-casting lights (a shadow map costs up to 5x a
            plain render on a CPU).
        shadow_size: shadow map size in texels (``model.vis.quality.shadowsize``).
    """

    msaa_samples: int | None = None
    shadows: bool | None = None
    shadow_size: int | None = None

    def validate(self) -> None:
        for name in ("msaa_samples", "shadow_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"RenderSettings.{name} must be None or an int >= 0, got {value!r}")
        if self.shadows is not None and not isinstance(self.shadows, bool):
            raise ValueError(f"RenderSettings.shadows must be None or a bool, got {self.shadows!r}")


# the render engines a config can choose (RemoteRendererConfig.backend)
BACKENDS = ("gl", "warp")


class RemoteRendererConfig:
    """What a renderer renders: the scene, the cameras, the image size and modalities.

    Fields and defaults: ``camera_names=[]``, ``image_width=100``,
    ``image_height=100``, ``renderer_version=None`` (any backend), ``model_xml_path``,
    ``model_mapping_path`` (None: the request's qpos is the model's full qpos),
    ``renderer_config_path`` (None: no components), ``asset_basedir='.'`` (relative
    paths resolve against it), ``render_alpha``, ``render_depth``, ``render_normals``,
    ``render_segmentation`` (all False), ``spawn_servers=True``, and
    ``render_settings`` (a :class:`RenderSettings`), ``backend="gl"`` (the engine: ``"gl"``
    rasterizes each entry with MuJoCo's OpenGL renderer, ``"warp"`` ray traces a whole batch
    with MuJoCo Warp, ``pip install "orrb[warp]"``). Assigning any other attribute
    raises ``AttributeError``, so a typo cannot pass silently.
    """

    __slots__ = (
        "camera_names", "image_width", "image_height", "renderer_version", "model_xml_path",
        "model_mapping_path", "renderer_config_path", "asset_basedir", "render_alpha",
        "render_depth", "render_normals", "render_segmentation", "spawn_servers", "render_settings",
        "backend",
    )

    def __init__(self, **fields: Any):
        self.camera_names: list[str] = []
        self.image_width: int = 100
        self.image_height: int = 100
        self.renderer_version: str | None = None
        self.model_xml_path: str | None = None
        self.model_mapping_path: str | None = None
        self.renderer_config_path: str | None = None
        self.asset_basedir: str = "."
        self.render_alpha: bool = False
        self.render_depth: bool = False
        self.render_normals: bool = False
        self.render_segmentation: bool = False
        self.spawn_servers: bool = True
        self.render_settings: RenderSettings = RenderSettings()
        self.backend: str = "gl"
        for name, value in fields.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__slots__:
            raise AttributeError(
                f"RemoteRendererConfig has no field {name!r}{did_you_mean(name, self.__slots__)}; "
                f"fields: {list(self.__slots__)}"
            )
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"RemoteRendererConfig({inner})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteRendererConfig) and self.to_dict() == other.to_dict()

    def copy(self) -> RemoteRendererConfig:
        return RemoteRendererConfig.from_dict(self.to_dict())

    # -- paths -----------------------------------------------------------------------------
    def resolve(self, path: str | os.PathLike | None) -> str | None:
        """Resolves a path against ``asset_basedir`` (absolute paths are kept)."""
        if path is None or path == "":
            return None
        path = os.path.expanduser(os.fspath(path))
        if os.path.isabs(path):
            return path
        return os.path.abspath(os.path.join(os.path.expanduser(os.fspath(self.asset_basedir)), path))

    def validate(self) -> None:
        """Checks field types and values (not files); raises ``ValueError``/``TypeError``."""
        if isinstance(self.camera_names, str) or not all(isinstance(c, str) for c in self.camera_names):
            raise TypeError(f"camera_names must be a list of camera name strings, got {self.camera_names!r}")
        if not self.camera_names:
            raise ValueError("camera_names is empty: name at least one camera of the model to render")
        twice = sorted({c for c in self.camera_names if self.camera_names.count(c) > 1})
        if twice:
            raise ValueError(f"camera_names lists {twice} more than once: outputs are keyed by camera name, "
                             "name each camera once")
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int (pixels), got {value!r}")
        if not self.model_xml_path:
            raise ValueError("model_xml_path is not set: give the MuJoCo XML scene file")
        for name in ("render_alpha", "render_depth", "render_normals", "render_segmentation", "spawn_servers"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.render_settings, RenderSettings):
            raise TypeError(f"render_settings must be an orrb.RenderSettings, got {self.render_settings!r}")
        self.render_settings.validate()
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")

    # -- transport ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (``render_settings`` as a nested dict)."""
        out = {k: copy.copy(getattr(self, k)) for k in self.__slots__ if k != "render_settings"}
        out["asset_basedir"] = os.fspath(out["asset_basedir"])
        out["render_settings"] = dataclasses.asdict(self.render_settings)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteRendererConfig:
        data = dict(data)
        settings = data.pop("render_settings", None) or {}
        config = cls(**data)
        config.render_settings = RenderSettings(**settings)
        return config


class ComponentSpec:
    """One component of a :class:`RendererConfig`: type, name, path and the properties it sets.

    Only properties that were given are stored (the rest keep their defaults, or
    their current values when the config is used in ``update()``). Edit with
    ``spec.set(fov_radius=2.0)`` or ``spec["fov_radius"] = 2.0``; values are
    checked against the component's declared properties.

    Raises:
        ConfigError: an unknown component type (with the known ones), or a property it
            does not declare.
    """

    def __init__(self, type: str, name: str, path: str = "", properties: dict[str, Any] | None = None,
                 where: str | None = None):
        from orrb.components.base import registry

        known = registry()
        if type not in known:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown component type {type!r}{did_you_mean(type, known)}; "
                              f"known types: {sorted(known)}")
        self.type = type
        self.name = name
        self.path = path or ""
        self.properties: dict[str, Any] = {}
        self._where = where
        if properties:
            self.set(**properties)

    @property
    def component_class(self):
        from orrb.components.base import registry

        return registry()[self.type]

    @property
    def where(self) -> str:
        prefix = f"{self._where}: " if self._where else ""
        return f"{prefix}component {self.name!r} ({self.type})"

    def set(self, **values: Any) -> ComponentSpec:
        """Sets properties (checked); returns self."""
        from orrb.components.properties import check_values

        self.properties.update(check_values(self.component_class.Properties, values, self.where))
        return self

    def __getitem__(self, name: str) -> Any:
        if name in self.properties:
            return self.properties[name]
        from orrb.components.properties import property_specs

        specs = property_specs(self.component_class.Properties)
        if name not in specs:
            raise KeyError(f"{self.where}: no property {name!r}{did_you_mean(name, specs)}; accepted: {sorted(specs)}")
        return specs[name].default

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(**{name: value})

    def __repr__(self) -> str:
        return f"ComponentSpec(type={self.type!r}, name={self.name!r}, path={self.path!r}, properties={self.properties!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ComponentSpec) and (self.type, self.name, self.path, self.properties) == (
            other.type, other.name, other.path, other.properties)

    def to_json(self) -> dict[str, Any]:
        from orrb.components.properties import to_sections

        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.path:
            out["path"] = self.path
        out["config"] = to_sections(self.component_class.Properties, self.properties)
        return out


class RendererConfig:
    """The component chain, in the original ORRB JSON format.

    ``{"frame": "mujoco", "components": [{"type": ..., "name": ..., "path": ..., "config": {...}}]}``
    where ``config`` holds the nine typed maps (``floatProperties``, ... or their
    snake_case spellings). Components run in list order for every entry.

    ``"frame"`` says in which frame the file's vectors are written: ``"mujoco"`` (MuJoCo's
    world, z up: what orrb writes) or ``"unity"`` (the original renderer's, y up,
    left-handed). A file without it is the original's and is read as ``"unity"``: its
    world points (``LightingRig.target``, ``CameraRandomizer.orbit_center``,
    ``LookAt.target_offset``) and camera-frame offsets (``CameraCalibrator``) are
    converted on load (:mod:`orrb.frames`), so the original's files mean what they meant.
    In memory every value is in MuJoCo's frame; ``conversion`` lists what was converted;
    ``save`` and ``to_json`` always write ``"frame": "mujoco"``.

    Example::

        config = orrb.RendererConfig.load('assets/dactyl.renderer_config.json')
        config['camera_randomizer'].set(fov_radius=2.0)
        config.add('Hide', 'hide_cube', geom_prefix='cube:')
        config.save('/tmp/my.renderer_config.json')
    """

    def __init__(self, components: list[ComponentSpec] | None = None, source: str | None = None):
        self.components: list[ComponentSpec] = []
        self.source = source
        #: properties converted from the original's frame on load (``orrb.frames.Change``);
        #: empty for a config built in code or read in MuJoCo's frame.
        self.conversion: list = []
        for spec in components or []:
            self._append(spec)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> RendererConfig:
        """Reads a renderer config file. Errors name the file, the component and the property."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"renderer config file not found: {path}")
        try:
            text = Path(path).read_text()
            data = json.loads(text)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"renderer config {path}: cannot read: {e}") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"renderer config {path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        return cls.from_json(data, source=path)

    @classmethod
    def from_json(cls, data: str | dict, source: str | None = None) -> RendererConfig:
        """Builds a config from a JSON string or the parsed dict.

        A top-level ``"frame"`` of ``"unity"``, or none, means the original's frame: its
        frame-dependent values are converted to MuJoCo's (see the class docstring).
        """
        where = f"renderer config {source}" if source else "renderer config"
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        if not isinstance(data, dict) or not isinstance(data.get("components", None), list):
            raise ConfigError(f'{where}: expected an object {{"components": [...]}}, got {str(data)[:80]!r}')
        from orrb import frames
        from orrb.components.base import registry
        from orrb.components.properties import parse_sections, property_specs

        frame = data.get("frame", frames.UNITY)
        if frame not in frames.FRAMES:
            raise ConfigError(f"{where}: 'frame' must be one of {list(frames.FRAMES)} (none means {frames.UNITY!r}, "
                              f"the original renderer's), got {frame!r}")
        unknown_top = set(data) - {"frame", "components"}
        if unknown_top:
            raise ConfigError(f"{where}: unknown top-level keys {sorted(unknown_top)}; accepted: frame, components")

        known = registry()
        config = cls(source=source)
        for i, entry in enumerate(data["components"]):
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: component #{i} must be an object, got {entry!r}")
            unknown_keys = set(entry) - {"type", "name", "path", "config"}
            if unknown_keys:
                raise ConfigError(f"{where}: component #{i}: unknown keys {sorted(unknown_keys)}; accepted: type, name, path, config")
            type_name = entry.get("type")
            name = entry.get("name") or f"{type_name}_{i}"
            if not isinstance(type_name, str) or type_name not in known:
                raise ConfigError(
                    f"{where}: component #{i} {name!r}: unknown component type {type_name!r}"
                    f"{did_you_mean(type_name, known)}; known types: {sorted(known)}"
                )
            path = entry.get("path") or ""
            if not isinstance(path, str) or not isinstance(name, str):
                raise ConfigError(f"{where}: component #{i}: 'name' and 'path' must be strings")
            spec = ComponentSpec(type_name, name, path, where=where)
            spec.properties = parse_sections(known[type_name].Properties, entry.get("config"), spec.where)
            if frame == frames.UNITY:
                specs = property_specs(known[type_name].Properties)
                for prop_name, value in spec.properties.items():
                    tag = specs[prop_name].frame
                    if tag is None:
                        continue
                    converted = frames.to_mujoco(tag, specs[prop_name].kind, value)
                    spec.properties[prop_name] = converted
                    if converted != value:
                        config.conversion.append(frames.Change(name, type_name, prop_name, tag, value, converted))
            config._append(spec, where)
        return config

    def _append(self, spec: ComponentSpec, where: str = "renderer config") -> None:
        if any(c.name == spec.name for c in self.components):
            raise ConfigError(f"{where}: two components are named {spec.name!r}; names must be unique")
        self.components.append(spec)

    def add(self, type: str, name: str, path: str = "", **properties: Any) -> ComponentSpec:
        """Appends a component; returns its spec for further edits."""
        from orrb.components.base import registry

        known = registry()
        if type not in known:
            raise ConfigError(f"unknown component type {type!r}{did_you_mean(type, known)}; known types: {sorted(known)}")
        spec = ComponentSpec(type, name, path, properties)
        self._append(spec)
        return spec

    def remove(self, name: str) -> None:
        self.components.remove(self[name])

    def __getitem__(self, name: str) -> ComponentSpec:
        for spec in self.components:
            if spec.name == name:
                return spec
        names = [c.name for c in self.components]
        raise KeyError(f"no component named {name!r}{did_you_mean(name, names)}; components: {names}")

    def __contains__(self, name: str) -> bool:
        return any(c.name == name for c in self.components)

    def __iter__(self):
        return iter(self.components)

    def __len__(self) -> int:
        return len(self.components)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RendererConfig) and self.components == other.components

    def __repr__(self) -> str:
        return f"RendererConfig({[f'{c.type}:{c.name}' for c in self.components]})"

    def copy(self) -> RendererConfig:
        out = RendererConfig.from_json(self.to_json(), source=self.source)
        out.conversion = list(self.conversion)
        return out

    def merged(self, update: RendererConfig) -> RendererConfig:
        """The config after ``update()`` with ``update``: same-named components get the given
        properties merged in, new names are appended."""
        out = self.copy()
        for spec in update.components:
            if spec.name in out:
                current = out[spec.name]
                if current.type != spec.type:
                    raise ConfigError(
                        f"update: component {spec.name!r} is a {current.type}, the update gives a {spec.type}"
                    )
                current.properties.update(spec.properties)
                if spec.path:
                    current.path = spec.path
            else:
                out._append(ComponentSpec(spec.type, spec.name, spec.path, dict(spec.properties)))
        return out

    # -- serialization -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object, in MuJoCo's frame: ``{"frame": "mujoco", "components": [...]}``."""
        return {"frame": "mujoco", "components": [c.to_json() for c in self.components]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json() + "\n")
