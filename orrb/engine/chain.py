"""``ComponentChain``: the renderer config's components in order, built, merged and described."""

from __future__ import annotations

import mujoco

from orrb.components.base import Component, SceneContext, registry
from orrb.components.properties import property_specs
from orrb.config import ComponentSpec, RendererConfig
from orrb.errors import ConfigError

__all__ = ["ComponentChain"]


class ComponentChain:
    """The component chain of an engine.

    Args:
        renderer_config: the components, in order (an empty chain when None).
    """

    def __init__(self, renderer_config: RendererConfig | None):
        known = registry()
        self._components: list[Component] = [known[spec.type](spec.name, spec.path, dict(spec.properties))
                                             for spec in (renderer_config or RendererConfig()).components]
        self._scene: SceneContext | None = None

    @property
    def components(self) -> list[Component]:
        """Every component, in chain order (a new list)."""
        return list(self._components)

    def active(self) -> list[Component]:
        """The enabled components, in chain order."""
        return [c for c in self._components if c.props.enabled]

    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        """Every component's structural edits, in chain order (disabled ones too: their
        additions are inert)."""
        for component in self._components:
            component.edit_spec(spec)

    def initialize(self, scene: SceneContext) -> None:
        """Initializes every component for a newly compiled model (kept for later additions)."""
        self._scene = scene
        for component in self._components:
            component.initialize(scene)

    def update(self, renderer_config: RendererConfig) -> bool:
        """Merges ``renderer_config`` into the chain.

        Same-named components get the given properties merged in; new names are appended.
        Component types are checked before anything changes; a property value the scene
        refuses (raised by a component's ``update`` or ``initialize``) may leave the chain
        half-changed, so the caller rebuilds the chain it had from its
        :meth:`renderer_config`.

        Returns:
            True when the model must be rebuilt (a structural property changed or a
            structural component was added); the caller then compiles and initializes again.

        Raises:
            ConfigError: a component name given with another type, or a value the scene refuses.
        """
        known = registry()
        by_name = {c.name: c for c in self._components}
        for spec in renderer_config.components:
            current = by_name.get(spec.name)
            if current is not None and current.type_name != spec.type:
                raise ConfigError(
                    f"update: component {spec.name!r} is a {current.type_name}, the update gives a {spec.type}"
                )
        rebuild = False
        for spec in renderer_config.components:
            current = by_name.get(spec.name)
            if current is None:
                component = known[spec.type](spec.name, spec.path, dict(spec.properties))
                if component.needs_spec():
                    rebuild = True
                else:
                    component.initialize(self._scene)
                self._components.append(component)
                by_name[spec.name] = component
                continue
            changed = current.set(spec.properties)
            if spec.path and spec.path != current.path:
                current.path = spec.path
                if current.needs_spec():
                    rebuild = True
                else:
                    current.initialize(self._scene)
                continue
            if changed & current.structural:
                rebuild = True
            elif changed:
                current.update(changed)
        return rebuild

    def renderer_config(self) -> RendererConfig:
        """The chain as a :class:`RendererConfig` (properties that differ from defaults)."""
        config = RendererConfig()
        for component in self._components:
            specs = property_specs(component.Properties)
            values = {n: getattr(component.props, n) for n in specs if getattr(component.props, n) != specs[n].default}
            config.components.append(ComponentSpec(component.type_name, component.name, component.path, values))
        return config

    def streams(self) -> dict[str, tuple[type, int]]:
        """Auxiliary streams of the enabled components: ``{name: (dtype, k)}``."""
        out: dict[str, tuple[type, int]] = {}
        for component in self.active():
            out.update(component.streams())
        return out
