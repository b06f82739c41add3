"""Labelled, resumable datasets of randomized renders for vision training (``orrb dataset``).

Format (version 2), everything readable with numpy and json alone::

    DIR/manifest.json        what the dataset is (written first, checked on resume)
    DIR/shard_00000.npz      items [0, shard_size)
    DIR/shard_00001.npz      items [shard_size, 2 * shard_size)  ...

``manifest.json`` holds ``format`` (``"orrb-dataset"``), ``version``, ``count``,
``shard_size``, ``num_shards``, ``seed``, ``cameras``, ``image_width``,
``image_height``, ``class_names`` (segmentation class id -> name, 0 = background),
``object`` (the body whose pose is labelled), ``renderer_config`` (the component
chain, original JSON format), ``qpos_columns``, what was rendered (``segmentation``,
``depth``, ``normals``, ``alpha``, ``render_settings``, ``backend``), the scene's files
(``model_xml_path``, and ``model_sha256`` / ``mapping_sha256``: hashes of the model XML's
and the mapping file's contents), ``arrays`` (name -> per-item shape, dtype and meaning;
added with the first shard) and ``description``. Each shard holds, for its ``n`` items:

- ``images_<camera>``: uint8 ``[n, H, W, 3]`` colour images;
- ``segmentation_<camera>``: uint8 ``[n, H, W]`` class ids (``class_names``), unless
  the dataset was written without segmentation;
- ``depth_<camera>``: float32 ``[n, H, W]`` metres (only with depth);
- ``normals_<camera>``: float32 ``[n, H, W, 3]`` (only with normals);
- every auxiliary stream of the chain under its own name, e.g.
  ``tracker_cube_X_<camera>`` float32 ``[n, 2]`` (normalized image position, x right,
  y down, (0, 0) top-left; NaN behind the camera) and ``tracker_cube_X_<camera>_bbox``
  float32 ``[n, 4]`` (``[x_min, x_max, y_min, y_max]``, normalized);
- ``<object>_pos`` float64 ``[n, 3]`` world position (m) and ``<object>_quat``
  float64 ``[n, 4]`` world orientation (w, x, y, z) of the labelled body;
- ``qpos`` float64 ``[n, K]`` the rendered states (mapping order), ``seeds`` uint64
  ``[n]`` the render seeds, ``index`` int64 ``[n]`` the item numbers.

Items are a pure function of ``(seed, item index, shard_size)``: shard ``s`` samples
its states from ``np.random.default_rng([seed, s])`` and item ``k`` renders with seed
``seed * 2**32 + k``. Shards are written to a temporary name and renamed, so an
interrupted run leaves only whole shards; rerunning the same command skips the
shards that exist and writes the rest, giving the same dataset as one
uninterrupted run.

Example::

    data = orrb.dataset.load_dataset('out/')
    data['images_vision_cam_left']          # uint8 [count, H, W, 3]
    data['tracker_cube_X_vision_cam_left']  # float32 [count, 2]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from orrb.renderer import Modality

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DatasetWriter",
    "item_seeds",
    "load_dataset",
    "load_manifest",
    "load_states",
    "sample_states",
]

FORMAT = "orrb-dataset"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"

# Fraction of each hand joint's range that sampled states use, (low, high) of [lo, hi]:
# relaxed hands whose fingers do not cover the cube, as scripts/make_states.py does for
# the shipped states. Joints not listed (other models) use their whole range.
_RELAXED = {
    "WRJ1": (0.25, 0.85), "WRJ0": (0.3, 0.7), "J3": (0.0, 1.0), "J2": (0.0, 0.45),
    "J1": (0.0, 0.45), "J0": (0.0, 0.45), "LFJ4": (0.0, 0.5), "THJ4": (0.0, 1.0),
    "THJ3": (0.0, 0.6), "THJ2": (0.0, 1.0), "THJ1": (0.0, 1.0), "THJ0": (0.5, 1.0),
}


def _relaxed_fraction(joint_name: str) -> tuple[float, float]:
    short = joint_name.split(":")[-1]
    if short in _RELAXED:
        return _RELAXED[short]
    if joint_name.startswith("robot0:") and short[-2:] in _RELAXED:
        return _RELAXED[short[-2:]]
    return (0.0, 1.0)


def _random_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``float64 [n, 4]`` uniformly random unit quaternions (w, x, y, z), w >= 0."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


def sample_states(model, mapping, count: int, rng: np.random.Generator, position_noise: float = 0.01) -> np.ndarray:
    """Samples states for a vision dataset: ``float64 [count, mapping.columns]``.

    Hinge joints are uniform inside their range (``model.jnt_range``; for the Shadow
    Hand a relaxed part of it, as the shipped states use), slide joints move up to
    ``position_noise`` metres around their rest value, ball and free joints get a
    uniformly random orientation (a free joint's position gets the same noise).
    Joints without a range keep their rest value.

    Args:
        model: the ``mujoco.MjModel`` the states are for.
        mapping: an :class:`orrb.scene.Mapping` of that model (request column layout).
        count: how many states.
        rng: the random stream.
        position_noise: half-width (m) of the uniform noise on positions.
    """
    import mujoco

    inv = np.full(model.nq, -1)
    inv[mapping.dst] = mapping.src  # model qpos address -> request column
    states = np.zeros((count, mapping.columns))
    states[:, mapping.src] = model.qpos0[mapping.dst]
    for j in range(model.njnt):
        adr = int(model.jnt_qposadr[j])
        col = int(inv[adr])
        if col < 0:
            continue
        jtype = model.jnt_type[j]
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or ""
        if jtype == mujoco.mjtJoint.mjJNT_HINGE:
            if model.jnt_limited[j]:
                lo, hi = model.jnt_range[j]
                a, b = _relaxed_fraction(name)
                states[:, col] = rng.uniform(lo + a * (hi - lo), lo + b * (hi - lo), size=count)
        elif jtype == mujoco.mjtJoint.mjJNT_SLIDE:
            value = model.qpos0[adr] + rng.uniform(-position_noise, position_noise, size=count)
            if model.jnt_limited[j]:
                value = np.clip(value, *model.jnt_range[j])
            states[:, col] = value
        elif jtype == mujoco.mjtJoint.mjJNT_BALL:
            states[:, col:col + 4] = _random_quaternions(rng, count)
        else:  # free
            states[:, col:col + 3] = model.qpos0[adr:adr + 3] + rng.uniform(-position_noise, position_noise, (count, 3))
            states[:, col + 3:col + 7] = _random_quaternions(rng, count)
    return states


def item_seeds(seed: int, start: int, stop: int) -> np.ndarray:
    """Render seeds ``uint64 [stop - start]`` of items ``[start, stop)``: ``seed * 2**32 + k``."""
    base = np.uint64((int(seed) << 32) % 2**64)
    return base + np.arange(start, stop, dtype=np.uint64)


def load_states(path: str | os.PathLike) -> np.ndarray:
    """Reads states, one qpos per row, from ``.npy`` or CSV (``#`` comment lines skipped).

    Returns:
        ``float64 [N, K]``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file does not hold a 2-D numeric table (says which file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"states file not found: {path}")
    try:
        if path.endswith(".npy"):
            states = np.load(path, allow_pickle=False)
        else:
            with warnings.catch_warnings():  # an empty file: the shape check below says so
                warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
                states = np.loadtxt(path, delimiter=",", ndmin=2, comments="#")
    except ValueError as e:
        raise ValueError(f"states file {path}: expected a numeric table, one qpos per row ({e})") from None
    states = np.asarray(states, dtype=np.float64)
    if states.ndim == 1:
        states = states[None]
    if states.size == 0:
        raise ValueError(f"states file {path} holds no states: expected one qpos per row")
    if states.ndim != 2:
        raise ValueError(f"states file {path}: expected a 2-D table [N, K] with N >= 1, got shape {states.shape}")
    return states


def load_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads ``DIR/manifest.json``; raises ``FileNotFoundError`` / ``ValueError`` naming the file."""
    path = os.path.join(os.fspath(directory), MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no dataset in {directory}: {path} does not exist")
    with open(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"dataset manifest {path} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an orrb dataset manifest (format {manifest.get('format')!r}, expected {FORMAT!r})")
    return manifest


def _file_sha256(path: str | None) -> str | None:
    """The SHA-256 of a file's bytes (hex), or None without a file."""
    if path is None:
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.npz"


def load_dataset(directory: str | os.PathLike, allow_partial: bool = False) -> dict[str, np.ndarray]:
    """Loads every shard of a dataset and concatenates each array over items.

    Args:
        directory: the dataset folder.
        allow_partial: load the shards that exist even if some are missing.

    Returns:
        ``{name: array [count, ...]}`` (see the module docstring for the names).

    Raises:
        FileNotFoundError: the manifest, or (without ``allow_partial``) a shard, is missing.
        ValueError: a shard whose arrays differ from the others' or hold another number of items.
    """
    manifest = load_manifest(directory)
    parts: dict[str, list[np.ndarray]] = {}
    keys = None
    for s in range(manifest["num_shards"]):
        path = os.path.join(os.fspath(directory), shard_name(s))
        if not os.path.isfile(path):
            if allow_partial:
                continue
            raise FileNotFoundError(
                f"dataset {directory} is incomplete: {shard_name(s)} is missing "
                f"(rerun the same 'orrb dataset' command to finish it)"
            )
        with np.load(path, allow_pickle=False) as shard:
            if keys is None:
                keys = sorted(shard.files)
            elif sorted(shard.files) != keys:
                raise ValueError(f"dataset {directory}: {shard_name(s)} holds arrays {sorted(shard.files)}, the "
                                 f"shards before it {keys}: shards written with different settings")
            expected = min(manifest["shard_size"], manifest["count"] - s * manifest["shard_size"])
            for key in shard.files:
                value = shard[key]
                if len(value) != expected:
                    raise ValueError(f"dataset {directory}: {shard_name(s)}[{key!r}] holds {len(value)} items; "
                                     f"expected {expected}")
                parts.setdefault(key, []).append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


def _describe(arrays: dict[str, np.ndarray], object_name: str) -> dict[str, dict[str, Any]]:
    meaning = {
        "qpos": "rendered state, mapping order",
        "seeds": "render seed of the item",
        "index": "item number",
        f"{object_name}_pos": f"world position of body {object_name!r} (m)",
        f"{object_name}_quat": f"world orientation of body {object_name!r} (w, x, y, z)",
    }
    out = {}
    for key, value in arrays.items():
        if key.startswith("images_"):
            doc = "colour image, row 0 at the top"
        elif key.startswith("segmentation_"):
            doc = "segmentation class id per pixel (see class_names)"
        elif key.startswith("depth_"):
            doc = "depth along the camera axis (m), 0 where nothing is hit"
        elif key.startswith("tracker_") and key.endswith("_bbox"):
            doc = "tracked object's box [x_min, x_max, y_min, y_max], normalized image coordinates"
        elif key.startswith("tracker_"):
            doc = ("tracked object's origin (x right, y down), normalized image coordinates; outside [0, 1] "
                   "off-screen, NaN behind the camera")
        else:
            doc = meaning.get(key, "auxiliary stream of the renderer config")
        out[key] = {"shape": list(value.shape[1:]), "dtype": str(value.dtype), "doc": doc}
    return out


class DatasetWriter:
    """Writes (or resumes) a dataset with a started renderer.

    Args:
        renderer: a started :class:`orrb.LocalRenderer` or :class:`orrb.RemoteRenderer`
            rendering the dataset's cameras (with ``render_segmentation``/``render_depth``
            when those arrays are wanted).
        config: the renderer's :class:`orrb.RemoteRendererConfig`.
        directory: output folder (created).
        count: number of items.
        shard_size: items per shard file.
        seed: dataset seed (states and render seeds derive from it and the item index).
        object_name: body whose world pose is labelled (``<object>_pos``, ``<object>_quat``).
        renderer_config_json: the chain as JSON data, recorded in the manifest.
        class_names: segmentation class names by id.
    """

    def __init__(self, renderer, config, directory: str | os.PathLike, count: int, shard_size: int = 64,
                 seed: int = 0, object_name: str = "cube", renderer_config_json: dict | None = None,
                 class_names: Sequence[str] = ()):
        from orrb.scene import Mapping, compile_spec, load_spec

        for name, value in (("count", count), ("shard_size", shard_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"dataset: {name} must be an int >= 1, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
            raise ValueError(f"dataset: seed must be an int in [0, 2**32), got {seed!r}")
        self.renderer = renderer
        self.config = config
        self.directory = os.path.abspath(os.fspath(directory))
        self.count = int(count)
        self.shard_size = int(shard_size)
        self.num_shards = -(-self.count // self.shard_size)
        self.seed = int(seed)
        self.object_name = object_name
        xml = config.resolve(config.model_xml_path)
        self._model = compile_spec(load_spec(xml), xml)
        self._mapping = Mapping(self._model, config.resolve(config.model_mapping_path))
        import mujoco

        self._object_id = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_BODY, object_name)
        if self._object_id < 0:
            bodies = [mujoco.mj_id2name(self._model, mujoco.mjtObj.mjOBJ_BODY, b) for b in range(1, self._model.nbody)]
            raise ValueError(f"dataset: the model {xml} has no body {object_name!r} to label; bodies: {bodies}")
        self.manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "description": __doc__.split("Example::")[0].strip(),
            "count": self.count,
            "shard_size": self.shard_size,
            "num_shards": self.num_shards,
            "seed": self.seed,
            "cameras": list(config.camera_names),
            "image_width": config.image_width,
            "image_height": config.image_height,
            "segmentation": bool(config.render_segmentation),
            "depth": bool(config.render_depth),
            "normals": bool(config.render_normals),
            "alpha": bool(config.render_alpha),
            "render_settings": dataclasses.asdict(config.render_settings),
            "backend": config.backend,
            "class_names": list(class_names),
            "object": object_name,
            "model_xml_path": os.path.basename(xml),
            "model_sha256": _file_sha256(xml),
            "mapping_sha256": _file_sha256(config.resolve(config.model_mapping_path)),
            "qpos_columns": int(self._mapping.columns),
            "renderer_config": renderer_config_json or {"components": []},
        }

    # what must match for a rerun to continue an existing dataset
    _IDENTITY = ("version", "count", "shard_size", "seed", "cameras", "image_width", "image_height",
                 "segmentation", "depth", "normals", "alpha", "render_settings", "backend", "object",
                 "model_xml_path", "model_sha256", "mapping_sha256", "qpos_columns", "renderer_config")

    def check_existing(self) -> None:
        """Checks that the dataset already in ``directory`` was written with the same arguments.

        Raises:
            ValueError: names every setting that differs (existing and now).
        """
        existing = load_manifest(self.directory)
        mismatched = [k for k in self._IDENTITY if existing.get(k) != self.manifest.get(k)]
        if mismatched:
            details = "; ".join(f"{k}: existing {existing.get(k)!r}, now {self.manifest.get(k)!r}"
                                for k in mismatched if k != "renderer_config")
            if "renderer_config" in mismatched:
                details += ("; " if details else "") + "renderer_config differs"
            raise ValueError(
                f"{self.directory} holds a different dataset ({details}); rerun with the same settings "
                f"to resume it, or choose another --out folder"
            )

    def check_folder(self) -> None:
        """Creates ``directory``, or checks that the dataset it holds is this one (and takes
        over its array descriptions).

        Raises:
            ValueError: a different dataset is there, or shards without a manifest.
        """
        os.makedirs(self.directory, exist_ok=True)
        if os.path.isfile(os.path.join(self.directory, MANIFEST)):
            self.check_existing()
            existing = load_manifest(self.directory)
            if "arrays" in existing:
                self.manifest["arrays"] = existing["arrays"]
        elif self.num_shards > len(self.pending_shards()):
            raise ValueError(f"{self.directory} holds dataset shards but no {MANIFEST}, so nothing says how they "
                             "were made; choose another --out folder, or remove the shards")

    def open(self) -> None:
        """:meth:`check_folder`, then writes the manifest (without ``arrays``) when there is
        none: before any shard, so a rerun always has settings to check."""
        self.check_folder()
        if not os.path.isfile(os.path.join(self.directory, MANIFEST)):
            self._write_manifest_file()

    def pending_shards(self) -> list[int]:
        return [s for s in range(self.num_shards)
                if not os.path.isfile(os.path.join(self.directory, shard_name(s)))]

    def shard_request(self, shard: int) -> dict[str, np.ndarray]:
        """The render request of a shard: ``{'qpos': [n, K], 'seeds': uint64 [n]}``."""
        start = shard * self.shard_size
        stop = min(start + self.shard_size, self.count)
        rng = np.random.default_rng([self.seed, shard])
        qpos = sample_states(self._model, self._mapping, stop - start, rng)
        return {"qpos": qpos, "seeds": item_seeds(self.seed, start, stop)}

    def _object_pose(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import mujoco

        data = mujoco.MjData(self._model)
        full = self._mapping.apply(qpos)
        pos = np.empty((len(qpos), 3))
        quat = np.empty((len(qpos), 4))
        for i, row in enumerate(full):  # kinematics only: ~3 us per state
            data.qpos[:] = row
            mujoco.mj_kinematics(self._model, data)
            pos[i] = data.xpos[self._object_id]
            quat[i] = data.xquat[self._object_id]
        return pos, quat

    def shard_arrays(self, shard: int, response: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Turns a shard's render response into the arrays stored in its file."""
        start = shard * self.shard_size
        qpos = np.asarray(response["qpos"], dtype=np.float64)
        arrays: dict[str, np.ndarray] = {}
        for output in self.renderer.layout:  # images under their dataset names, streams as they are
            value = response[output.key]
            arrays[output.dataset_name] = value[..., :3] if output.modality is Modality.COLOR else value
        pos, quat = self._object_pose(qpos)
        arrays[f"{self.object_name}_pos"] = pos
        arrays[f"{self.object_name}_quat"] = quat
        arrays["qpos"] = qpos
        arrays["seeds"] = np.asarray(response["seeds"], dtype=np.uint64)
        arrays["index"] = np.arange(start, start + len(qpos), dtype=np.int64)
        return arrays

    def write_shard(self, shard: int, arrays: dict[str, np.ndarray]) -> None:
        """Writes shard ``shard`` (``shard_arrays``' output) under a temporary name, then renames it,
        so an interrupted run leaves only whole shards."""
        final = os.path.join(self.directory, shard_name(shard))
        tmp = os.path.join(self.directory, f".{shard_name(shard)}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)  # atomic: a shard file is whole or absent

    def write_manifest(self, arrays: dict[str, np.ndarray]) -> None:
        """Writes ``manifest.json``, describing the arrays of a shard (``arrays``: one shard's)."""
        self.manifest["arrays"] = _describe(arrays, self.object_name)
        self._write_manifest_file()

    def _write_manifest_file(self) -> None:
        path = os.path.join(self.directory, MANIFEST)
        tmp = path + f".{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.manifest, f, indent=2)
        os.replace(tmp, path)

    def run(self, progress: bool = True, stop_after: int | None = None, in_flight: int = 2) -> int:
        """Renders and writes the missing shards; returns how many it wrote.

        Args:
            progress: show a tqdm progress bar, counting items (states; each is rendered by
                every camera).
            stop_after: stop after writing this many new shards (None: all); a later
                run continues from there.
            in_flight: batches queued on the renderer ahead of the one being written.
        """
        import queue as queue_module

        from tqdm import tqdm

        self.open()
        pending = self.pending_shards()
        if stop_after is not None:
            pending = pending[:max(0, int(stop_after))]
        done_items = self.count - sum(
            min(self.shard_size, self.count - s * self.shard_size) for s in self.pending_shards())
        bar = tqdm(total=self.count, initial=done_items, unit=" states", desc="orrb dataset", disable=not progress,
                   dynamic_ncols=True)
        written = 0
        futures: list[tuple[int, Any]] = []
        try:
            todo = list(pending)
            while todo or futures:
                while todo and len(futures) < max(1, in_flight):
                    shard = todo.pop(0)
                    futures.append((shard, self.renderer.render_batch_async(self.shard_request(shard),
                                                                            queue_module.Queue())))
                shard, future = futures.pop(0)
                arrays = self.shard_arrays(shard, future.result())
                if "arrays" not in self.manifest:
                    self.write_manifest(arrays)
                self.write_shard(shard, arrays)
                written += 1
                bar.update(len(arrays["index"]))
        finally:
            for _, future in futures:  # let queued batches finish before the renderer goes
                try:
                    future.result()
                except Exception:
                    pass
            bar.close()
        return written
