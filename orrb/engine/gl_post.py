"""Post-processing as GL shader passes on the offscreen framebuffer, before readback.

:class:`GLPostProcessor` applies :class:`~orrb.components.post_processing_randomizer.PostProcessingRandomizer`'s
effects (colour grading, bloom, ambient occlusion from depth, film grain) to tiles MuJoCo has
just drawn, with the same per-entry draws as the component's CPU path (``end_batch``). The
frame reader calls it right before it reads a group of tiles back; the read then gets the
post-processed colour and the untouched depth.

The passes, each one draw call for all tiles of the group (per-tile parameters come from a
small float texture, one row per tile):

1. a blit copies the tiles' colour and depth (resolving MSAA) into textures of ours;
2. bloom: block means of the colour at bloom resolution, their bright part, a narrow box
   blur and a wide box blur of it (separable, clamped at the tile's edges);
3. ambient occlusion: the crease detector on depth sampled at block centres (the depth
   buffer is read as a texture and converted to metres with the clip planes the tile was
   drawn with), then a 3x3 box blur;
4. the composite, drawn into MuJoCo's (multisampled) framebuffer with depth writes off:
   ``floor(clip(M (ao x + glow) + o + grain))`` per pixel, written to every sample, so the
   reader's resolve returns it unchanged.

Grain uses the CPU path's noise fields (numpy's generator, per entry and camera, at the
grain's own resolution), uploaded as a texture: a GPU hash noise would be cheaper on the CPU
but would differ from the CPU path pixel by pixel by more than the effects' tolerance.

Arithmetic is float32 in a different order than numpy's, so a pixel can differ from the CPU
path by a unit where a value lies near a rounding boundary (the tests bound the mean
difference per channel by 2/255). GL state that MuJoCo relies on is saved and restored
around the passes.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from orrb.components.post_processing_randomizer import (AO_RADIUS, BLOOM_THRESHOLD, PostProcessingRandomizer,
                                                         block_sizes, effect_constants, grain_noise)

__all__ = ["GLPostProcessor", "GLPostStage", "PostTile"]

_TEXELS = 8  # parameter texels per tile (see _pack)

_VERTEX = """#version 330
uniform sampler2D params;
uniform vec2 target;      // render target size, pixels
uniform int scale;        // 0: the tile at full resolution; 1: ambient occlusion blocks; 2: bloom blocks
flat out int tile;
flat out ivec4 rect;      // the tile's rectangle in the target (x, y, w, h)
flat out ivec4 full;      // the tile's rectangle in the framebuffer
void main() {
    tile = gl_VertexID / 6;
    int corner = gl_VertexID % 6;
    full = ivec4(texelFetch(params, ivec2(0, tile), 0));
    ivec4 blocks = ivec4(texelFetch(params, ivec2(6, tile), 0));
    int f = scale == 1 ? blocks.x : (scale == 2 ? blocks.y : 1);
    rect = ivec4(full.xy / f, full.zw / f);
    vec2 c = vec2((corner == 1 || corner == 4 || corner == 5) ? 1.0 : 0.0,
                  (corner == 2 || corner == 3 || corner == 5) ? 1.0 : 0.0);
    vec2 p = vec2(rect.xy) + c * vec2(rect.zw);
    gl_Position = vec4(p / target * 2.0 - 1.0, 0.0, 1.0);
}
"""

_HEADER = """#version 330
uniform sampler2D params;
flat in int tile;
flat in ivec4 rect;
flat in ivec4 full;
layout(location = 0) out vec4 result;
vec4 P(int k) { return texelFetch(params, ivec2(k, tile), 0); }
ivec2 local() { return ivec2(gl_FragCoord.xy) - rect.xy; }  // (column, image row) in block grids
"""

# bloom's bright part of block means (image rows counted from the top, as the CPU path does)
_BRIGHT = _HEADER + """
uniform sampler2D color;
void main() {
    int fb = int(P(6).y);
    ivec2 b = local();
    vec3 s = vec3(0.0);
    for (int dy = 0; dy < fb; ++dy)
        for (int dx = 0; dx < fb; ++dx) {
            int row = b.y * fb + dy;
            ivec2 at = ivec2(full.x + b.x * fb + dx, full.y + full.w - 1 - row);
            s += floor(texelFetch(color, at, 0).rgb * 255.0 + 0.5);
        }
    vec3 small = s * (1.0 / float(fb * fb)) * (1.0 / 255.0);
    float lum = dot(small, vec3(0.299, 0.587, 0.114));
    result = vec4(small * (max(lum - BLOOM_THRESHOLD, 0.0) / (1.0 - BLOOM_THRESHOLD)), 1.0);
}
"""

# separable box blur with edge clamping inside the tile's block grid
_BLUR = _HEADER + """
uniform sampler2D source;
uniform int axis;         // 1: along image rows (y), 2: along columns (x)
uniform int which;        // radius: 0 bloom narrow, 1 bloom wide, 2 ambient occlusion (1)
void main() {
    vec4 r = P(6);
    int radius = which == 0 ? int(r.w) : (which == 1 ? 3 * int(r.w) : 1);
    ivec2 b = local();
    vec4 s = vec4(0.0);
    for (int k = -radius; k <= radius; ++k) {
        ivec2 q = axis == 1 ? ivec2(b.x, clamp(b.y + k, 0, rect.w - 1)) : ivec2(clamp(b.x + k, 0, rect.z - 1), b.y);
        s += texelFetch(source, rect.xy + q, 0);
    }
    result = s * (1.0 / float(2 * radius + 1));
}
"""

# crease occlusion from depth at block centres
_OCCLUSION = _HEADER + """
uniform sampler2D depth;
float metres(ivec2 b) {
    int f = int(P(6).x);
    ivec2 q = clamp(b, ivec2(0), rect.zw - 1);
    int row = f / 2 + q.y * f;
    float raw = texelFetch(depth, ivec2(full.x + f / 2 + q.x * f, full.y + full.w - 1 - row), 0).r;
    vec4 clip = P(7);  // near / (far - near), far near / (far - near)
    return raw > 0.0 ? clip.y / (raw + clip.x) : 1e3;
}
void main() {
    int r = int(P(6).z);
    ivec2 b = local();
    float d = metres(b);
    float front = d - 3.0 * AO_RADIUS;
    float occ = 0.0;
    ivec2 dirs[4] = ivec2[4](ivec2(-r, -r), ivec2(0, -r), ivec2(r, -r), ivec2(r, 0));  // (x, y)
    for (int k = 0; k < 4; ++k) {
        float n1 = metres(b + dirs[k]);
        float n2 = metres(b - dirs[k]);
        float pair = clamp((d + d - n1 - n2) * (0.5 / AO_RADIUS), 0.0, 1.0);
        occ += min(n1, n2) > front ? pair : 0.0;
    }
    result = vec4(occ * 0.25, 0.0, 0.0, 1.0);
}
"""

# the composite at full resolution
_COMPOSITE = _HEADER + """
uniform sampler2D color;
uniform sampler2D narrow;
uniform sampler2D wide;
uniform sampler2D occlusion;
uniform sampler2D grain;
void main() {
    ivec2 px = ivec2(gl_FragCoord.xy);
    vec4 src = texelFetch(color, px, 0);
    ivec2 p = px - full.xy;
    int row = full.w - 1 - p.y, col = p.x;
    vec4 g = P(4), blocks = P(6), gp = P(5);
    mat3 m = transpose(mat3(P(1).xyz, P(2).xyz, P(3).xyz));
    vec3 add = vec3(P(1).w, P(2).w, P(3).w);
    int f = int(blocks.x), fb = int(blocks.y);
    ivec2 ao_grid = full.zw / f;
    ivec2 blk = min(ivec2(col, row) / f, ao_grid - 1);
    vec3 x = m * floor(src.rgb * 255.0 + 0.5);
    if (g.z != 0.0) {
        float occ = texelFetch(occlusion, full.xy / f + blk, 0).r;
        x *= clamp(1.0 - g.z * occ, 0.0, 1.0);
    }
    if (g.x != 0.0) {
        ivec2 gb = blk / (fb / f);
        ivec2 at = full.xy / fb + gb;
        vec3 glow = (texelFetch(narrow, at, 0).rgb * (1.0 - g.y) + texelFetch(wide, at, 0).rgb * g.y) * g.x;
        add += m * glow;
    }
    x += add;
    if (g.w != 0.0) {
        float size = gp.x;
        ivec2 cells = ivec2(gp.w, gp.z);  // (columns, rows) of the noise field
        vec2 at = vec2(col, row);
        ivec2 cell = ivec2(floor(at / size));
        // the division may be off by an ulp: keep cell * size <= at < (cell + 1) * size as numpy's is
        cell += ivec2(lessThanEqual(vec2(cell + 1) * size, at));
        cell -= ivec2(greaterThan(vec2(cell) * size, at));
        cell = min(cell, cells - 1);
        vec4 n = texelFetch(grain, ivec2(P(7).zw) + cell, 0);
        x += (gp.y != 0.0 ? n.rgb : n.rrr) * g.w;
    }
    result = vec4(floor(clamp(x, 0.0, 255.0)) * (1.0 / 255.0), src.a);
}
"""


@dataclasses.dataclass(frozen=True)
class PostTile:
    """One drawn tile to post-process.

    Attributes:
        rect: the tile's rectangle in the offscreen framebuffer, pixels (GL origin bottom left).
        values: ``float [12]`` the entry's draws (a row of ``PostProcessingRandomizer.Draws.values``).
        grain_seed: the entry's grain seed.
        camera_index: the camera's position in the config.
        clip: ``(near, far)`` clip planes the tile was drawn with, metres.
    """

    rect: mujoco.MjrRect
    values: np.ndarray
    grain_seed: int
    camera_index: int
    clip: tuple[float, float]


class GLPostProcessor:
    """Runs post-processing passes on tiles of MuJoCo's offscreen framebuffer.

    Owns its GL objects (programs, textures, framebuffers), made on first use in the GL
    context current then; ``close()`` frees them and must run with that context current.
    Not thread-safe (the GL context's thread).
    """

    def __init__(self):
        self._gl = None  # the OpenGL.GL module, imported on first use
        self._programs: dict[str, tuple[int, dict[str, int]]] = {}
        self._textures: dict[str, int] = {}
        self._fbos: dict[str, int] = {}
        self._vao = 0
        self._size: tuple | None = None  # framebuffer width, height, colour and depth formats
        self._params_rows = 0
        self._bound: tuple | None = None  # (framebuffer id, width, height) the objects were made for

    # -- public --------------------------------------------------------------------------------
    def apply(self, con: mujoco.MjrContext, tiles: list[PostTile]) -> None:
        """Post-processes ``tiles`` in MuJoCo's offscreen framebuffer, in place (colour only).

        Tiles whose draws are all zero are left alone; when every tile's are, nothing runs
        (the pixels stay bit-identical to MuJoCo's).

        Args:
            con: MuJoCo's render context (the current GL context's), offscreen buffer bound.
            tiles: the tiles drawn since the last readback.
        """
        live = [t for t in tiles if np.any(np.asarray(t.values)[[0, 1, 2, 3, 4, 5, 6, 8, 10]] != 0)]
        if not live:
            return
        self.prepare(con)
        GL = self._gl
        params, grain = self._pack(live)
        # an error flag left by earlier GL calls (MuJoCo's, or another library's) is not ours:
        # PyOpenGL would raise it on our first call
        for _ in range(16):
            if GL.glGetError() == GL.GL_NO_ERROR:
                break
        pushed = False
        try:
            GL.glPushAttrib(GL.GL_ALL_ATTRIB_BITS)
            pushed = True
            self._upload(params, grain, (con.offWidth, con.offHeight))
            self._resolve(con, live)
            self._passes(con, live)
        finally:
            GL.glUseProgram(0)
            GL.glBindVertexArray(0)
            for unit in range(5, -1, -1):
                GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
                GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
            if pushed:
                GL.glPopAttrib()
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)  # MuJoCo's bindings back

    def prepare(self, con: mujoco.MjrContext) -> None:
        """Compiles the programs and makes the textures for ``con``'s offscreen buffer (its GL
        context current); does nothing when they are ready.

        Raises:
            ImportError: no PyOpenGL. RuntimeError / OpenGL.error.GLError: the GL context
            cannot compile or hold them.
        """
        if self._gl is None:
            from OpenGL import GL

            self._gl = GL
        key = (con.offFBO, con.offWidth, con.offHeight)
        if key != self._bound:
            try:
                self._ensure(con)
            finally:
                mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)  # MuJoCo's bindings back
            self._bound = key

    def close(self) -> None:
        """Frees the GL objects (with their GL context current). Idempotent."""
        self._bound = None
        GL, self._gl = self._gl, None
        textures, fbos, programs, vao = self._textures, self._fbos, self._programs, self._vao
        self._textures, self._fbos, self._programs, self._vao, self._size = {}, {}, {}, 0, None
        if GL is None:
            return
        if fbos:
            GL.glDeleteFramebuffers(len(fbos), list(fbos.values()))
        if textures:
            GL.glDeleteTextures(list(textures.values()))
        for program, _ in programs.values():
            GL.glDeleteProgram(program)
        if vao:
            GL.glDeleteVertexArrays(1, [vao])

    # -- parameters ----------------------------------------------------------------------------
    def _pack(self, tiles: list[PostTile]) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
        """The parameter texture ``float32 [tiles, 8, 4]`` and the grain fields to upload, each
        ``(x, y, float32 [rows, columns, 4])`` placed at its tile's corner (fields are never
        larger than their tile, so they do not overlap).

        Texels per tile: 0 rect (x, y, w, h); 1-3 the grading matrix's rows, each with the
        channel's offset (0-255 units, +0.5) in w; 4 bloom gain, bloom mix, ambient occlusion
        gain, grain gain; 5 grain size, coloured, noise rows, noise columns; 6 ambient
        occlusion block, bloom block, crease distance, narrow blur radius; 7 depth constants
        (near / (far - near), far near / (far - near)) and the noise field's place (x, y).
        """
        n = len(tiles)
        k = effect_constants(np.stack([np.asarray(t.values, np.float64) for t in tiles]))
        p = np.zeros((n, _TEXELS, 4), np.float32)
        p[:, 0] = [(t.rect.left, t.rect.bottom, t.rect.width, t.rect.height) for t in tiles]
        p[:, 1:4, 0:3] = k["matrix"]
        p[:, 1:4, 3] = k["add"]
        p[:, 4] = np.stack([k["bloom_gain"], k["bloom_mix"], k["ao_gain"], k["grain_gain"]], axis=1)
        p[:, 6] = [block_sizes(t.rect.height, t.rect.width) for t in tiles]
        near = np.array([t.clip[0] for t in tiles], np.float32)
        far = np.array([t.clip[1] for t in tiles], np.float32)
        p[:, 7, 0] = near / (far - near)
        p[:, 7, 1] = far * near / (far - near)
        fields = []
        for i in np.flatnonzero(k["grain_gain"] != 0):
            t = tiles[i]
            size = max(1.0, float(t.values[11]))  # the CPU path's float64 size: the same noise field
            noise = grain_noise(int(t.grain_seed), t.camera_index, size, bool(k["grain_colored"][i]),
                                t.rect.height, t.rect.width)
            gh, gw = noise.shape[:2]
            p[i, 5] = (size, float(k["grain_colored"][i]), gh, gw)
            p[i, 7, 2:4] = (t.rect.left, t.rect.bottom)
            field = np.zeros((gh, gw, 4), np.float32)
            field[..., :noise.shape[2]] = noise
            fields.append((t.rect.left, t.rect.bottom, field))
        return p, fields

    # -- GL objects ----------------------------------------------------------------------------
    def _ensure(self, con: mujoco.MjrContext) -> None:
        """Makes the programs, textures and framebuffers for ``con``'s offscreen buffer size."""
        GL = self._gl
        if not self._programs:
            constants = f"#define BLOOM_THRESHOLD {BLOOM_THRESHOLD!r}\n#define AO_RADIUS {AO_RADIUS!r}\n"
            programs = {}
            try:
                for name, source in (("bright", _BRIGHT), ("blur", _BLUR), ("occlusion", _OCCLUSION),
                                     ("composite", _COMPOSITE)):
                    source = source.replace("#version 330\n", "#version 330\n" + constants, 1)
                    programs[name] = _program(GL, _VERTEX, source)
            except BaseException:
                for program, _ in programs.values():
                    GL.glDeleteProgram(program)
                raise
            self._programs = programs
            self._vao = int(GL.glGenVertexArrays(1))
        # the copies resolve MSAA with a blit, which needs MuJoCo's formats on both sides
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, con.offFBO)
        formats = []
        for attachment in (GL.GL_COLOR_ATTACHMENT0, GL.GL_DEPTH_ATTACHMENT):
            buffer = GL.glGetFramebufferAttachmentParameteriv(GL.GL_FRAMEBUFFER, attachment,
                                                              GL.GL_FRAMEBUFFER_ATTACHMENT_OBJECT_NAME)
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, buffer)
            formats.append(int(GL.glGetRenderbufferParameteriv(GL.GL_RENDERBUFFER, GL.GL_RENDERBUFFER_INTERNAL_FORMAT)))
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, 0)
        color_format, depth_format = formats
        size = (con.offWidth, con.offHeight, color_format, depth_format)
        if size == self._size:
            return
        if self._fbos:
            GL.glDeleteFramebuffers(len(self._fbos), list(self._fbos.values()))
        if self._textures:
            GL.glDeleteTextures(list(self._textures.values()))
        self._fbos, self._textures = {}, {}
        w, h = con.offWidth, con.offHeight
        lw, lh = w // 4 + 2, h // 4 + 2  # block grids (blocks of 4 pixels or more)
        self._textures["color"] = _texture(GL, color_format, w, h)
        self._textures["depth"] = _texture(GL, depth_format, w, h)
        for name in ("bright", "temp", "narrow", "wide", "occlusion", "occlusion_temp", "occlusion_blur"):
            self._textures[name] = _texture(GL, GL.GL_RGBA32F, lw, lh)
        self._params_rows = 0
        stencil = depth_format in (GL.GL_DEPTH24_STENCIL8, GL.GL_DEPTH32F_STENCIL8)
        self._fbos["source"] = _framebuffer(GL, self._textures["color"], self._textures["depth"],
                                            GL.GL_DEPTH_STENCIL_ATTACHMENT if stencil else GL.GL_DEPTH_ATTACHMENT)
        for name in ("bright", "temp", "narrow", "wide", "occlusion", "occlusion_temp", "occlusion_blur"):
            self._fbos[name] = _framebuffer(GL, self._textures[name])
        self._size = size

    def _upload(self, params: np.ndarray, grain: list[tuple[int, int, np.ndarray]], size: tuple[int, int]) -> None:
        GL = self._gl
        n = params.shape[0]
        if n > self._params_rows:
            if "params" in self._textures:
                GL.glDeleteTextures([self._textures.pop("params")])
            self._params_rows = max(n, 32)
            self._textures["params"] = _texture(GL, GL.GL_RGBA32F, _TEXELS, self._params_rows)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._textures["params"])
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, _TEXELS, n, GL.GL_RGBA, GL.GL_FLOAT, params)
        if grain:
            if "grain" not in self._textures:  # the framebuffer's size, made on first use
                self._textures["grain"] = _texture(GL, GL.GL_RGBA32F, *size)
            GL.glBindTexture(GL.GL_TEXTURE_2D, self._textures["grain"])
            for x, y, field in grain:
                GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, x, y, field.shape[1], field.shape[0], GL.GL_RGBA,
                                   GL.GL_FLOAT, field)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    # -- passes --------------------------------------------------------------------------------
    def _resolve(self, con: mujoco.MjrContext, tiles: list[PostTile]) -> None:
        """Copies the tiles' colour and depth (resolving MSAA) into the source textures."""
        GL = self._gl
        x0 = min(t.rect.left for t in tiles)
        y0 = min(t.rect.bottom for t in tiles)
        x1 = max(t.rect.left + t.rect.width for t in tiles)
        y1 = max(t.rect.bottom + t.rect.height for t in tiles)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, con.offFBO)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._fbos["source"])
        GL.glBlitFramebuffer(x0, y0, x1, y1, x0, y0, x1, y1, GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT,
                             GL.GL_NEAREST)

    def _passes(self, con: mujoco.MjrContext, tiles: list[PostTile]) -> None:
        GL = self._gl
        for cap in (GL.GL_BLEND, GL.GL_DEPTH_TEST, GL.GL_STENCIL_TEST, GL.GL_CULL_FACE, GL.GL_SCISSOR_TEST,
                    GL.GL_ALPHA_TEST, GL.GL_SAMPLE_ALPHA_TO_COVERAGE, GL.GL_FRAMEBUFFER_SRGB, GL.GL_DITHER,
                    GL.GL_MULTISAMPLE):
            GL.glDisable(cap)
        for plane in range(6):  # MuJoCo's user clip planes
            GL.glDisable(GL.GL_CLIP_PLANE0 + plane)
        GL.glPolygonMode(GL.GL_FRONT_AND_BACK, GL.GL_FILL)  # MuJoCo leaves GL_LINE after a wireframe render
        GL.glDepthMask(GL.GL_FALSE)
        GL.glColorMask(GL.GL_TRUE, GL.GL_TRUE, GL.GL_TRUE, GL.GL_TRUE)
        GL.glBindVertexArray(self._vao)
        n = len(tiles)
        values = np.stack([np.asarray(t.values, np.float64) for t in tiles])
        bloom = bool(np.any(values[:, 6] != 0))
        occlusion = bool(np.any(values[:, 8] != 0))
        w, h = con.offWidth, con.offHeight
        lw, lh = w // 4 + 2, h // 4 + 2
        if bloom:
            self._draw("bright", "bright", (lw, lh), 2, n, color="color")
            self._draw("blur", "temp", (lw, lh), 2, n, source="bright", axis=1, which=0)
            self._draw("blur", "narrow", (lw, lh), 2, n, source="temp", axis=2, which=0)
            self._draw("blur", "temp", (lw, lh), 2, n, source="narrow", axis=1, which=1)
            self._draw("blur", "wide", (lw, lh), 2, n, source="temp", axis=2, which=1)
        if occlusion:
            self._draw("occlusion", "occlusion", (lw, lh), 1, n, depth="depth")
            self._draw("blur", "occlusion_temp", (lw, lh), 1, n, source="occlusion", axis=1, which=2)
            self._draw("blur", "occlusion_blur", (lw, lh), 1, n, source="occlusion_temp", axis=2, which=2)
        textures = {"color": "color", "narrow": "narrow", "wide": "wide", "occlusion": "occlusion_blur"}
        if "grain" in self._textures:
            textures["grain"] = "grain"
        self._draw("composite", con.offFBO, (w, h), 0, n, **textures)

    def _draw(self, program: str, target, size: tuple[int, int], scale: int, n: int, **uniforms) -> None:
        """One pass over ``n`` tiles into ``target`` (a framebuffer of ours by name, or a GL id)."""
        GL = self._gl
        prog, locations = self._programs[program]
        if isinstance(target, str):
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._fbos[target])  # drawing to its attachment 0
        else:
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, target)
            GL.glDrawBuffer(GL.GL_COLOR_ATTACHMENT0)
        GL.glViewport(0, 0, size[0], size[1])
        GL.glUseProgram(prog)
        GL.glUniform2f(locations["target"], float(size[0]), float(size[1]))
        GL.glUniform1i(locations["scale"], scale)
        unit = 0
        for name, value in [("params", "params"), *uniforms.items()]:
            if name not in locations:
                continue
            if isinstance(value, str):
                GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
                GL.glBindTexture(GL.GL_TEXTURE_2D, self._textures[value])
                GL.glUniform1i(locations[name], unit)
                unit += 1
            else:
                GL.glUniform1i(locations[name], int(value))
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 6 * n)

    @staticmethod
    def supports(component) -> bool:
        """True when the GL passes can apply ``component``'s image stage."""
        return type(component) is PostProcessingRandomizer


def _texture(GL, internal_format: int, width: int, height: int) -> int:
    """A ``width x height`` 2D texture with nearest sampling and no mipmaps (texelFetch only)."""
    tex = int(GL.glGenTextures(1))
    try:
        GL.glBindTexture(GL.GL_TEXTURE_2D, tex)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_NEAREST)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_NEAREST)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAX_LEVEL, 0)
        GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, internal_format, width, height)
    except BaseException:
        GL.glDeleteTextures([tex])
        raise
    finally:
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    return tex


def _framebuffer(GL, color: int, depth: int | None = None, attachment: int = 0) -> int:
    """A framebuffer with ``color`` (and ``depth`` at ``attachment``) attached."""
    fbo = int(GL.glGenFramebuffers(1))
    GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, fbo)
    GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, color, 0)
    if depth is not None:
        GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, attachment, GL.GL_TEXTURE_2D, depth, 0)
    status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
    GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
    if status != GL.GL_FRAMEBUFFER_COMPLETE:
        GL.glDeleteFramebuffers(1, [fbo])
        raise RuntimeError(f"post-processing framebuffer incomplete (status 0x{int(status):x})")
    return fbo


def _program(GL, vertex: str, fragment: str) -> tuple[int, dict[str, int]]:
    """A linked program and its uniforms' locations."""
    shaders, program = [], 0
    try:
        for kind, source in ((GL.GL_VERTEX_SHADER, vertex), (GL.GL_FRAGMENT_SHADER, fragment)):
            shader = GL.glCreateShader(kind)
            shaders.append(shader)
            GL.glShaderSource(shader, source)
            GL.glCompileShader(shader)
            if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
                raise RuntimeError(f"post-processing shader does not compile: {GL.glGetShaderInfoLog(shader)!r}")
        program = GL.glCreateProgram()
        for shader in shaders:
            GL.glAttachShader(program, shader)
        GL.glLinkProgram(program)
        if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
            raise RuntimeError(f"post-processing program does not link: {GL.glGetProgramInfoLog(program)!r}")
    except BaseException:
        if program:
            GL.glDeleteProgram(program)
        raise
    finally:
        for shader in shaders:  # a linked program keeps what it needs
            GL.glDeleteShader(shader)
    count = GL.glGetProgramiv(program, GL.GL_ACTIVE_UNIFORMS)
    locations = {}
    for i in range(count):
        name = GL.glGetActiveUniform(program, i)[0]
        name = name.decode() if isinstance(name, bytes) else name
        locations[name] = GL.glGetUniformLocation(program, name)
    return program, locations



class GLPostStage:
    """The frame reader's hook: post-processes each group of tiles right before its readback.

    The engine hands it a batch's GL-path components with :meth:`begin` and takes them back
    with :meth:`end`; between batches, and with no components, a call does nothing. The
    reader calls it with its render context and the group's tiles as ``(rect, entry, camera,
    (near, far))``: the tile's rectangle in the framebuffer, the entry's row in the batch, the
    camera's position in the config and the clip planes it was drawn with, metres. Owns a
    :class:`GLPostProcessor`; ``close()`` with the GL context current.
    """

    def __init__(self):
        self._processor = GLPostProcessor()
        self._components: list = []
        self._batch = None

    def begin(self, components: list, batch) -> None:
        """Post-processes with ``components`` (chain order) and their draws in ``batch``."""
        self._components, self._batch = list(components), batch

    def end(self) -> None:
        self._components, self._batch = [], None

    def __call__(self, con: mujoco.MjrContext,
                 tiles: list[tuple[mujoco.MjrRect, int, int, tuple[float, float]]]) -> None:
        if not self._components or not tiles:
            return
        for component in self._components:
            draws = self._batch.draws(component)
            self._processor.apply(con, [PostTile(rect, draws.values[i], int(draws.grain_seeds[i]), c, clip)
                                        for rect, i, c, clip in tiles])

    def prepare(self, con: mujoco.MjrContext) -> None:
        """Compiles the passes and makes their textures for ``con`` (its GL context current).

        Raises:
            ImportError: no PyOpenGL. RuntimeError / OpenGL.error.GLError: the GL context
            cannot compile or hold them.
        """
        self._processor.prepare(con)

    def close(self) -> None:
        """Frees the GL objects (with their GL context current). Idempotent."""
        self.end()
        self._processor.close()
