"""PostProcessingRandomizer: colour grading, bloom, ambient occlusion and film grain on the whole batch."""

from __future__ import annotations

import dataclasses

import numpy as np

from orrb.components.base import BatchContext, Component, Frames, register
from orrb.components.properties import RandomizerProperties, prop

_LUMA = np.array([0.299, 0.587, 0.114])
_DOWN = 4  # bloom and ambient occlusion work on images downsampled by this factor (bloom by 2x
# that on images of at least 128 px)
_BLOOM_THRESHOLD = 0.75  # luminance above which pixels bloom
_BLOOM_GAIN = 0.35  # bloom added at intensity 1
_AO_RADIUS = 0.015  # metres: depth differences at this scale darken creases fully
_AO_GAIN = 0.15  # darkening at intensity 1 and full occlusion
_GRAIN_GAIN = 0.25  # grain standard deviation at intensity 1 (fraction of full scale)
BLOOM_THRESHOLD, AO_RADIUS = _BLOOM_THRESHOLD, _AO_RADIUS  # shared with the GL passes (orrb/engine/gl_post.py)
# draws per entry, in order (always all of them, so enabling an effect changes no other draw)
_FIELDS = ("hue", "saturation", "contrast", "brightness", "temperature", "tint",
           "bloom_intensity", "bloom_diffusion", "ao_intensity", "grain_colored", "grain_intensity", "grain_size")


def _box_blur(x: np.ndarray, radius: int, axes=(1, 2)) -> np.ndarray:
    """Separable box blur of ``[B, H, W, ...]`` with edge clamping; float32.

    Small radii sum shifted slices of the edge-padded image (faster than cumulative sums at
    the radii the effects use: see benchmarks/RESULTS.md); larger ones difference cumulative sums.
    """
    if radius <= 0:
        return x
    for axis in axes:
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        lead = (slice(None),) * axis
        if radius <= 4:
            pad[axis] = (radius, radius)
            padded = np.pad(x, pad, mode="edge")
            acc = padded[lead + (slice(0, n),)].astype(np.float32)
            for k in range(1, 2 * radius + 1):
                acc += padded[lead + (slice(k, k + n),)]
        else:
            pad[axis] = (radius + 1, radius)
            c = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis, dtype=np.float32)
            acc = c[lead + (slice(2 * radius + 1, 2 * radius + 1 + n),)] - c[lead + (slice(0, n),)]
        x = acc * np.float32(1 / (2 * radius + 1))
    return x


def _downsample(x: np.ndarray, f: int) -> np.ndarray:
    """Block mean of ``[B, H, W, ...]`` by ``f`` (H, W cropped to multiples of f); float32."""
    h, w = x.shape[1:3]
    hh, ww = h // f, w // f
    # f strided adds per axis, faster than a reduce over reshaped axes; uint8 input sums
    # exactly in uint16 (up to 16x16 blocks), cheaper than float32
    acc = np.uint16 if x.dtype == np.uint8 and f <= 16 else np.float32
    rows = x[:, 0:hh * f:f].astype(acc)
    for k in range(1, f):
        rows += x[:, k:hh * f:f]
    out = rows[:, :, 0:ww * f:f].copy()
    for k in range(1, f):
        out += rows[:, :, k:ww * f:f]
    return out.astype(np.float32) * np.float32(1 / (f * f))


def _upsample(x: np.ndarray, f: int, h: int, w: int) -> np.ndarray:
    """Nearest upsampling of ``[B, h/f, w/f, ...]`` back to ``[B, h, w, ...]`` (edge-padded)."""
    up = np.repeat(np.repeat(x, f, axis=1), f, axis=2)
    ph, pw = h - up.shape[1], w - up.shape[2]
    if ph or pw:
        pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (up.ndim - 3)
        up = np.pad(up, pad, mode="edge")
    return up


def _blocks(x: np.ndarray, f: int) -> np.ndarray | None:
    """A ``[B, H/f, f, W/f, f, ...]`` view of ``x`` when H and W are multiples of ``f``, else None."""
    b, h, w = x.shape[:3]
    if h % f or w % f:
        return None
    return x.reshape(b, h // f, f, w // f, f, *x.shape[3:])


def _crease_occlusion(d: np.ndarray, r: int) -> np.ndarray:
    """Occlusion in [0, 1] of ``float32 [B, h, w]`` depth (a crease detector).

    For 4 pairs of opposite neighbours ``r`` pixels away: how much nearer the pair is on
    average (saturating at ``_AO_RADIUS``); a plane's pairs cancel, a crease's add up.
    Pairs with a neighbour more than 3 * ``_AO_RADIUS`` nearer are a different object in
    front, not a crease, and do not count (no halos).
    """
    b, h, w = d.shape
    padded = np.pad(d, ((0, 0), (r, r), (r, r)), mode="edge")
    twice = d + d
    front = d - np.float32(3 * _AO_RADIUS)  # a neighbour nearer than this is another object
    occ = np.zeros_like(d)
    for dy, dx in ((-r, -r), (-r, 0), (-r, r), (0, r)):  # 4 opposite pairs: planes cancel, creases add
        n1 = padded[:, r + dy:r + dy + h, r + dx:r + dx + w]
        n2 = padded[:, r - dy:r - dy + h, r - dx:r - dx + w]
        # mean nearness of the pair, (d - n1 + d - n2) / 2, in units of _AO_RADIUS, clipped to [0, 1]
        pair = np.clip((twice - n1 - n2) * np.float32(0.5 / _AO_RADIUS), 0.0, 1.0)
        pair *= np.minimum(n1, n2) > front
        occ += pair
    return occ * np.float32(1 / 4)


def grading_matrices(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry colour grading as ``rgb' = M @ rgb + o`` (rgb in [0, 1]).

    Args:
        values: ``float [B, 6]``: hue shift (degrees), saturation, contrast, brightness,
            temperature, tint (percent in [-100, 100]).

    Returns:
        ``(M float32 [B, 3, 3], o float32 [B, 3])``. Composition: white balance (temperature
        warms red and cools blue by up to 30%; positive tint is magenta: green down by up to
        30%), hue rotation about the grey axis, saturation (lerp from luminance, factor
        1 + s/100), brightness (gain 1 + b/100), contrast about mid-grey (1 + c/100).
        All zeros give the identity.
    """
    b = values.shape[0]
    hue = np.radians(values[:, 0])
    sat, con, bri, temp, tint = (values[:, k] / 100.0 for k in range(1, 6))
    wb = np.zeros((b, 3, 3))
    wb[:, 0, 0] = 1 + 0.3 * temp
    wb[:, 1, 1] = 1 - 0.3 * tint
    wb[:, 2, 2] = 1 - 0.3 * temp
    # rotation about the (1,1,1) axis by `hue`
    c, s = np.cos(hue), np.sin(hue)
    k = 1.0 / 3.0
    r3 = np.sqrt(k)
    rot = np.empty((b, 3, 3))
    rot[:, 0, 0] = rot[:, 1, 1] = rot[:, 2, 2] = c + (1 - c) * k
    rot[:, 0, 1] = rot[:, 1, 2] = rot[:, 2, 0] = (1 - c) * k - r3 * s
    rot[:, 0, 2] = rot[:, 1, 0] = rot[:, 2, 1] = (1 - c) * k + r3 * s
    luma = np.broadcast_to(_LUMA, (3, 3))
    f = (1 + sat)[:, None, None]
    satm = luma[None] * (1 - f) + np.eye(3)[None] * f
    gain = ((1 + bri) * (1 + con))[:, None, None]
    m = gain * (satm @ rot @ wb)
    o = np.repeat((0.5 * (1 - (1 + con)))[:, None], 3, axis=1)
    exact = ~np.any(values[:, :6] != 0, axis=1)
    m[exact] = np.eye(3)
    o[exact] = 0.0
    return m.astype(np.float32), o.astype(np.float32)


@register
class PostProcessingRandomizer(Component):
    """Image-space randomization of the colour images, vectorized over the whole batch.

    One draw per entry, shared by all its cameras (made in ``run`` from the entry's
    stream; applied in ``end_batch``): colour grading as one 3x3 matrix plus offset per
    entry (see :func:`grading_matrices`), bloom (pixels brighter than luminance 0.75 bleed
    into their surroundings, computed at 1/8 resolution (1/4 below 128 px); intensity scales the glow,
    diffusion in [1, 10] blends a narrow into a wide blur), ambient occlusion (pixels lying
    behind their neighbourhood's mean depth, i.e. in creases, darken; 1/4 resolution,
    from the depth of the colour pass, so it needs no extra render) and film grain
    (Gaussian noise, monochrome or, with ``grain_color_probability``, coloured; standard
    deviation 0.25 * intensity of full scale; grain size in pixels, noise generated at
    1/size resolution). A disabled effect, or one whose drawn amount is 0, leaves the
    image unchanged; with every effect at 0 the image is bit-identical.

    Streams with ``emit_values`` (float32, [1] each): ``<name>_<field>`` for every field of
    ``hue, saturation, contrast, brightness, temperature, tint, bloom_intensity,
    bloom_diffusion, ao_intensity, grain_colored, grain_intensity, grain_size`` (0 for a
    disabled effect).
    """

    type_name = "PostProcessingRandomizer"

    @dataclasses.dataclass(frozen=True)
    class Properties(RandomizerProperties):
        enable_color_grading: bool = prop(True, "apply colour grading")
        cg_min_hue_shift: float = prop(-10.0, "lower bound of the hue shift (degrees)", span=(-180.0, 180.0))
        cg_max_hue_shift: float = prop(10.0, "upper bound of the hue shift (degrees)", span=(-180.0, 180.0))
        cg_min_saturation: float = prop(-20.0, "lower bound of the saturation change (%)", low=-100.0, high=100.0)
        cg_max_saturation: float = prop(20.0, "upper bound of the saturation change (%)", low=-100.0, high=100.0)
        cg_min_contrast: float = prop(-20.0, "lower bound of the contrast change (%)", low=-100.0, high=100.0)
        cg_max_contrast: float = prop(20.0, "upper bound of the contrast change (%)", low=-100.0, high=100.0)
        cg_min_brightness: float = prop(-20.0, "lower bound of the brightness change (%)", low=-100.0, high=100.0)
        cg_max_brightness: float = prop(20.0, "upper bound of the brightness change (%)", low=-100.0, high=100.0)
        cg_min_temperature: float = prop(0.0, "lower bound of the white-balance temperature (%)",
                                         low=-100.0, high=100.0)
        cg_max_temperature: float = prop(0.0, "upper bound of the white-balance temperature (%)",
                                         low=-100.0, high=100.0)
        cg_min_tint: float = prop(0.0, "lower bound of the white-balance tint (%)", low=-100.0, high=100.0)
        cg_max_tint: float = prop(0.0, "upper bound of the white-balance tint (%)", low=-100.0, high=100.0)
        enable_bloom: bool = prop(True, "apply bloom")
        bloom_min_intensity: float = prop(0.75, "lower bound of the bloom intensity", low=0.0, span=(0.0, 5.0))
        bloom_max_intensity: float = prop(1.25, "upper bound of the bloom intensity", low=0.0, span=(0.0, 5.0))
        bloom_min_diffusion: float = prop(2.0, "lower bound of the bloom spread (1-10)", low=1.0, high=10.0)
        bloom_max_diffusion: float = prop(2.5, "upper bound of the bloom spread (1-10)", low=1.0, high=10.0)
        enable_ambient_occlusion: bool = prop(True, "apply ambient occlusion (from depth)")
        ao_min_intensity: float = prop(1.75, "lower bound of the ambient occlusion intensity",
                                       low=0.0, span=(0.0, 10.0))
        ao_max_intensity: float = prop(2.25, "upper bound of the ambient occlusion intensity",
                                       low=0.0, span=(0.0, 10.0))
        enable_grain: bool = prop(False, "apply film grain")
        grain_color_probability: float = prop(0.75, "probability that the grain is coloured", low=0.0, high=1.0)
        grain_min_intensity: float = prop(0.0, "lower bound of the grain intensity (0-1)", low=0.0, high=1.0)
        grain_max_intensity: float = prop(0.0, "upper bound of the grain intensity (0-1)", low=0.0, high=1.0)
        grain_min_size: float = prop(0.0, "lower bound of the grain size (pixels)", low=0.0, span=(0.0, 4.0))
        grain_max_size: float = prop(0.0, "upper bound of the grain size (pixels)", low=0.0, span=(0.0, 4.0))

    @property
    def needs_depth(self) -> bool:
        """Depth is read from the colour pass only when ambient occlusion is on."""
        return self.props.enable_ambient_occlusion

    def streams(self):
        if not self.props.emit_values:
            return {}
        return {f"{self.name}_{f}": (np.float32, 1) for f in _FIELDS}

    @dataclasses.dataclass(frozen=True)
    class Draws:
        """A batch's draws, one row per entry (kept in the batch's :class:`BatchContext`).

        Attributes:
            values: ``float64 [B, 12]`` the drawn amounts, in the order of the streams
                (hue ... grain_size); 0 for a disabled effect.
            grain_seeds: ``uint64 [B]`` seeds of the entries' grain patterns.
        """

        values: np.ndarray
        grain_seeds: np.ndarray

    def begin_batch(self, batch: BatchContext) -> None:
        batch.keep(self, self.Draws(np.zeros((batch.size, len(_FIELDS))), np.zeros(batch.size, dtype=np.uint64)))

    def run(self, entry):
        p, rng = self.props, entry.rng
        u = rng.uniform(size=len(_FIELDS))
        grain_seed = rng.integers(0, 2**63)
        lo = np.array([p.cg_min_hue_shift, p.cg_min_saturation, p.cg_min_contrast, p.cg_min_brightness,
                       p.cg_min_temperature, p.cg_min_tint, p.bloom_min_intensity, p.bloom_min_diffusion,
                       p.ao_min_intensity, 0.0, p.grain_min_intensity, p.grain_min_size])
        hi = np.array([p.cg_max_hue_shift, p.cg_max_saturation, p.cg_max_contrast, p.cg_max_brightness,
                       p.cg_max_temperature, p.cg_max_tint, p.bloom_max_intensity, p.bloom_max_diffusion,
                       p.ao_max_intensity, 1.0, p.grain_max_intensity, p.grain_max_size])
        v = lo + (hi - lo) * u
        v[9] = float(u[9] < p.grain_color_probability)
        if not p.enable_color_grading:
            v[0:6] = 0.0
        if not p.enable_bloom:
            v[6:8] = 0.0
        if not p.enable_ambient_occlusion:
            v[8] = 0.0
        if not p.enable_grain:
            v[9:12] = 0.0
        draws = entry.batch.draws(self)
        draws.values[entry.index] = v
        draws.grain_seeds[entry.index] = grain_seed
        if p.emit_values:
            for k, f in enumerate(_FIELDS):
                entry.emit(f"{self.name}_{f}", [v[k]])

    def end_batch(self, frames: Frames, batch: BatchContext) -> None:
        draws = batch.draws(self)
        for k, (camera, color) in enumerate(frames.color.items()):
            depth = frames.depth.get(camera)
            self.apply(color[..., :3], depth, draws, camera_index=k, out=color[..., :3], entries=frames.entries)

    def apply(self, rgb: np.ndarray, depth: np.ndarray | None, draws: Draws, camera_index: int = 0,
              out: np.ndarray | None = None, entries: slice = slice(None)) -> np.ndarray:
        """Applies a batch's drawn effects to ``uint8 [B, H, W, 3]``; returns uint8 (may be ``rgb``).

        Every effect is computed per entry, so applying it to chunks of the batch gives the
        same pixels as applying it to the whole batch.

        Args:
            rgb: colour images of one camera for the batch's ``entries``.
            depth: ``float32 [B, H, W]`` metres (0 = nothing hit), or None (no ambient occlusion).
            draws: the batch's draws (``batch.draws(self)`` after ``run`` set its entries up).
            camera_index: which camera of the entry (each camera gets its own grain pattern).
            out: ``uint8 [B, H, W, 3]`` to write the result into (may be ``rgb`` itself).
            entries: which entries of the batch ``rgb`` holds (default: all of them).
        """
        v = draws.values[entries]
        b, h, w, _ = rgb.shape
        grade = np.any(v[:, 0:6] != 0)
        bloom = np.any(v[:, 6] != 0)
        ao = depth is not None and np.any(v[:, 8] != 0)
        grain = np.any(v[:, 10] != 0)
        if not (grade or bloom or ao or grain):
            if out is not None and out is not rgb:
                np.copyto(out, rgb)
                return out
            return rgb
        # Work in 0-255 units and in an order that touches the full-resolution image as few
        # times as possible: grading is linear, so it commutes with the per-pixel AO factor, and
        # the bloom glow and grading offset are graded and summed at block resolution first:
        #   out = M (ao * x + glow) + o = ao * (M x) + (M glow + o)
        f, fb, r_ao, r1 = block_sizes(h, w)
        m, o = grading_matrices(v[:, 0:6]) if grade else (None, np.zeros((b, 3), np.float32))
        if grade:
            # a 3-wide product: a block-diagonal 12-wide one is faster alone, but BLAS runs it on
            # every core, and several servers' BLAS threads on one machine then starve each
            # other (benchmarks/RESULTS.md has the GPU machine's figures)
            x = (rgb.reshape(b, h * w, 3).astype(np.float32) @ m.transpose(0, 2, 1)).reshape(b, h, w, 3)
        else:
            x = rgb.astype(np.float32)
        dark = None
        if ao:
            # depth sampled at block centres (AO is a low-frequency effect); background (0) is
            # pushed far away so that it neither occludes nor is occluded
            d = depth[:, f // 2:(h // f) * f:f, f // 2:(w // f) * f:f]
            d = np.where(d > 0, d, np.float32(1e3))
            occ = _crease_occlusion(d, r_ao)
            occ = _box_blur(occ[..., None], 1)[..., 0]
            dark = np.clip(1.0 - (np.float32(_AO_GAIN) * v[:, 8, None, None].astype(np.float32)) * occ, 0.0, 1.0)
        add = np.float32(255) * o[:, None, None, :] + np.float32(0.5)  # [B, 1, 1, 3]; +0.5 rounds half up
        if bloom:
            # bloom is the softest effect: at 1/8 resolution when the image is large enough (fb)
            small = _downsample(rgb, fb) * np.float32(1 / 255)
            lum = small @ _LUMA.astype(np.float32)
            bright = small * (np.clip(lum - _BLOOM_THRESHOLD, 0, None) / np.float32(1 - _BLOOM_THRESHOLD))[..., None]
            narrow = _box_blur(bright, r1)
            wide = _box_blur(narrow, 3 * r1)
            t = np.clip((v[:, 7] - 1.0) / 9.0, 0.0, 1.0).astype(np.float32)[:, None, None, None]
            gain = np.float32(255 * _BLOOM_GAIN) * v[:, 6].astype(np.float32)[:, None, None, None]
            glow = (narrow * (1 - t) + wide * t) * gain
            if grade:
                glow = (glow.reshape(b, -1, 3) @ m.transpose(0, 2, 1)).reshape(glow.shape)
            if fb != f:
                glow = np.repeat(np.repeat(glow, fb // f, axis=1), fb // f, axis=2)
            add = glow + add  # [B, h/f, w/f, 3]
        if h % f == 0 and w % f == 0:
            # rows of blocks as [B, H/f, f, W*3]: the per-block factors repeat along W*3 (one long,
            # contiguous inner loop; broadcasting over a trailing axis of 3 is much slower)
            rows = x.reshape(b, h // f, f, w * 3)
            if dark is not None:
                rows *= np.repeat(dark, f * 3, axis=2)[:, :, None, :]
            if add.shape[1] > 1:
                rows += np.repeat(add, f, axis=2).reshape(b, h // f, 1, w * 3)
            else:
                rows += np.tile(add.reshape(b, 1, 1, 3), (1, 1, 1, w)).reshape(b, 1, 1, w * 3)
        else:
            if dark is not None:
                x *= _upsample(dark, f, h, w)[..., None]
            x += _upsample(add, f, h, w) if add.shape[1] > 1 else add
        if grain:
            x += np.float32(255) * self._grain(v, draws.grain_seeds[entries], h, w, camera_index)
        np.clip(x, 0.0, 255.0, out=x)
        if out is None:
            return x.astype(np.uint8)
        np.copyto(out, x, casting="unsafe")  # straight into the caller's array: no uint8 temporary
        return out

    @staticmethod
    def _grain(v: np.ndarray, seeds: np.ndarray, h: int, w: int, camera_index: int) -> np.ndarray:
        """Film grain ``float32 [B, H, W, 3]`` (fraction of full scale) for draws ``v`` and grain seeds."""
        out = np.zeros((len(v), h, w, 3), np.float32)
        for i in np.flatnonzero(v[:, 10] != 0):  # one noise field per entry (a few numpy calls each)
            size = max(1.0, float(v[i, 11]))
            noise = grain_noise(int(seeds[i]), camera_index, size, bool(v[i, 9]), h, w)
            gh, gw = noise.shape[:2]
            rows = np.minimum((np.arange(h) / size).astype(int), gh - 1)
            cols = np.minimum((np.arange(w) / size).astype(int), gw - 1)
            out[i] = noise[rows][:, cols] * np.float32(_GRAIN_GAIN * v[i, 10])
        return out


def grain_noise(seed: int, camera_index: int, size: float, colored: bool, h: int, w: int) -> np.ndarray:
    """An entry's grain pattern for one camera at its own resolution.

    Args:
        seed: the entry's grain seed (``Draws.grain_seeds``).
        camera_index: the camera's position in the config (each camera has its own pattern).
        size: grain size in pixels (>= 1): one noise value covers ``size x size`` pixels.
        colored: one value per channel (True) or one shared by the channels.
        h, w: the image size, pixels.

    Returns:
        ``float32 [ceil(h / size), ceil(w / size), 3 if colored else 1]`` standard normal values.
    """
    rng = np.random.default_rng([seed, camera_index])
    gh, gw = int(np.ceil(h / size)), int(np.ceil(w / size))
    return rng.standard_normal((gh, gw, 3 if colored else 1), dtype=np.float32)


def block_sizes(h: int, w: int) -> tuple[int, int, int, int]:
    """The block grid the effects work on for ``h x w`` images.

    Returns:
        ``(f, fb, r_ao, r_bloom)``: ambient occlusion's block size (4 pixels, or the smaller
        side of an image smaller than that), bloom's (``2 f``
        on images of at least ``32 f`` pixels whose sides are multiples of it, else ``f``),
        the crease detector's neighbour distance in ``f`` blocks and the narrow bloom blur's
        radius in ``fb`` blocks (the wide blur's is 3 times that).
    """
    f = min(_DOWN, h, w)  # images smaller than a block are one block
    fb = 2 * f if (h % (2 * f) == 0 and w % (2 * f) == 0 and min(h, w) >= 32 * f) else f
    return f, fb, max(1, round(min(h, w) / f / 25)), max(1, round(min(h, w) / fb / 25))


def effect_constants(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-entry constants of the effects, for applying draws outside ``apply`` (the GL passes).

    Args:
        values: ``float [N, 12]`` rows of ``Draws.values``.

    Returns:
        ``{"matrix": float32 [N, 3, 3], "add": float32 [N, 3]`` (grading offset in 0-255 units,
        plus 0.5 to round half up), ``"bloom_gain"``, ``"bloom_mix"`` (wide blur's share),
        ``"ao_gain"``, ``"grain_gain"`` (0-255 units), ``"grain_size"`` (pixels, >= 1):
        ``float32 [N]``, ``"grain_colored": bool [N]}``. Thresholds and radii are those of ``apply``:
        ``BLOOM_THRESHOLD`` and ``AO_RADIUS`` (metres), :func:`block_sizes`.
    """
    values = np.asarray(values, np.float64).reshape(-1, len(_FIELDS))
    m, o = grading_matrices(values[:, 0:6])
    return {
        "matrix": m,
        "add": (np.float32(255) * o + np.float32(0.5)).astype(np.float32),
        "bloom_gain": np.float32(255 * _BLOOM_GAIN) * values[:, 6].astype(np.float32),
        "bloom_mix": np.clip((values[:, 7] - 1.0) / 9.0, 0.0, 1.0).astype(np.float32),
        "ao_gain": np.float32(_AO_GAIN) * values[:, 8].astype(np.float32),
        "grain_gain": (np.float32(255) * (_GRAIN_GAIN * values[:, 10])).astype(np.float32),
        "grain_size": np.maximum(1.0, values[:, 11]).astype(np.float32),
        "grain_colored": values[:, 9] != 0,
    }

