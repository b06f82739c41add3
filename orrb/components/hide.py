"""Hide: removes matching bodies (with their subtrees), geoms and sites from every modality."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components.base import HIDDEN_GROUP, Component, prefix_mask, register, split_names
from orrb.components.properties import Properties, prop


@register
class Hide(Component):
    """Hides bodies, geoms and sites whose names start with the given prefixes.

    Hidden objects are drawn in no modality (colour, depth, normals, segmentation)
    and do not count in tracker boxes. Updating the prefixes first shows what was
    hidden before (the engine restores every entry from the model's base values).
    """

    type_name = "Hide"

    @dataclasses.dataclass(frozen=True)
    class Properties(Properties):
        body_prefix: str = prop("", "comma-separated body name prefixes (subtrees hidden)")
        geom_prefix: str = prop("", "comma-separated geom name prefixes")
        site_prefix: str = prop("", "comma-separated site name prefixes")

    def initialize(self, scene):
        self._scene = scene
        self._scope = scene.scope(self.path, self.where)
        self.update({"body_prefix", "geom_prefix", "site_prefix"})

    def update(self, changed):
        scene, scope, m = self._scene, self._scope, self._scene.model
        in_scope_geoms = np.zeros(m.ngeom, dtype=bool)
        in_scope_geoms[scope.geoms] = True
        in_scope_sites = np.zeros(m.nsite, dtype=bool)
        in_scope_sites[scope.sites] = True

        hidden_bodies = np.zeros(m.nbody, dtype=bool)
        for bid in np.flatnonzero(prefix_mask(scene.body_names, split_names(self.props.body_prefix))):
            hidden_bodies[scene.subtree_bodies(bid)] = True
        geoms = prefix_mask(scene.geom_names, split_names(self.props.geom_prefix)) | hidden_bodies[m.geom_bodyid]
        sites = prefix_mask(scene.site_names, split_names(self.props.site_prefix)) | hidden_bodies[m.site_bodyid]
        self._geoms = np.flatnonzero(geoms & in_scope_geoms)
        self._sites = np.flatnonzero(sites & in_scope_sites)

    def run(self, entry):
        entry.model.geom_group[self._geoms] = HIDDEN_GROUP
        entry.model.site_group[self._sites] = HIDDEN_GROUP
