"""``BatchOutputs``: a batch's response arrays, allocated from the response layout, and the
per-camera views the engine's stages write into."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.config import RemoteRendererConfig
from orrb.engine.modalities import alpha_from_depth, normals_from_depth
from orrb.renderer import Modality, ResponseLayout

__all__ = ["BatchOutputs"]


@dataclasses.dataclass(frozen=True)
class BatchOutputs:
    """The arrays of one batch of ``B`` entries.

    Attributes:
        response: ``{key: array}`` one fresh array per output of the layout, in its order
            (what ``render`` returns).
        color: ``{camera: uint8 [B, H, W, 3|4]}`` (views of ``response``).
        depth: ``{camera: float32 [B, H, W]}`` metres: the response's depth, or scratch read
            for normals, alpha or a component; empty when nothing needs depth.
        normals: ``{camera: float32 [B, H, W, 3]}`` when normals are rendered.
        segmentation: ``{camera: uint8 [B, H, W]}`` when segmentation is rendered.
        fovy: ``{camera: float64 [B]}`` each entry's vertical field of view, degrees.
        streams: ``{key: [B, k]}`` the components' streams, zeros until they emit.
    """

    response: dict[str, np.ndarray]
    color: dict[str, np.ndarray]
    depth: dict[str, np.ndarray]
    normals: dict[str, np.ndarray]
    segmentation: dict[str, np.ndarray]
    fovy: dict[str, np.ndarray]
    streams: dict[str, np.ndarray]

    @classmethod
    def allocate(cls, config: RemoteRendererConfig, streams: dict[str, tuple[type, int]], n: int,
                 wants_depth: bool) -> BatchOutputs:
        """Arrays for ``n`` entries of ``ResponseLayout.from_config(config, streams)``;
        ``wants_depth``: depth is read even when it is not an output."""
        layout = ResponseLayout.from_config(config, streams)
        response = layout.allocate(n)
        by_modality: dict[Modality, dict[str, np.ndarray]] = {m: {} for m in Modality}
        for output in layout:
            by_modality[output.modality][output.camera or output.key] = response[output.key]
        depth = by_modality[Modality.DEPTH]
        if wants_depth and not depth:
            h, w = config.image_height, config.image_width
            depth = {c: np.empty((n, h, w), np.float32) for c in config.camera_names}
        for values in by_modality[Modality.STREAM].values():
            values.fill(0)  # a component may leave an entry's row unwritten
        return cls(response, by_modality[Modality.COLOR], depth, by_modality[Modality.NORMALS],
                   by_modality[Modality.SEGMENTATION], {c: np.empty(n) for c in config.camera_names},
                   by_modality[Modality.STREAM])

    def finish(self, config: RemoteRendererConfig) -> dict[str, np.ndarray]:
        """Derives alpha and normals from the drawn depth; returns ``response``."""
        for camera, color in self.color.items():
            if config.render_alpha:
                alpha_from_depth(self.depth[camera], out=color[..., 3])
            if camera in self.normals:
                normals_from_depth(self.depth[camera], self.fovy[camera], out=self.normals[camera])
        return self.response
