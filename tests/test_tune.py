"""``orrb tune``: the page in a real browser, and the app against bad input.

The browser tests drive Debian's ``chromium`` with Playwright against ``orrb tune`` started
as the user would start it (a subprocess printing its address), rendering with a
``LocalRenderer``. The robustness tests send malformed and oversized WebSocket messages
and HTTP requests to a second app that has a shared secret and an ``--out`` file.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import orrb

CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover (the test extra installs it)
    sync_playwright = None

pytest.importorskip("starlette", reason="orrb tune needs the tune extra: pip install \"orrb[tune]\"")
pytest.importorskip("uvicorn", reason="orrb tune needs the tune extra: pip install \"orrb[tune]\"")
needs_browser = pytest.mark.skipif(
    sync_playwright is None or CHROMIUM is None,
    reason="the browser tests need Playwright (pip install playwright) and Debian's chromium "
           "(apt-get install -y chromium); .ci/run installs both")


class TuneApp:
    """``orrb tune`` in a subprocess; ``url`` is the address it printed."""

    def __init__(self, *args: str, env: dict | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "orrb", "tune", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **(env or {})})
        line = self.process.stdout.readline()
        match = re.search(r"serving (http://[\d.]+:(\d+)/)", line)
        if not match:
            rest = self.process.stdout.read() if self.process.poll() is not None else ""
            self.close()
            raise RuntimeError(f"orrb tune did not start: {line}{rest}")
        self.url, self.port = match.group(1), int(match.group(2))

    def close(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        out = self.process.stdout.read()
        self.process.stdout.close()
        return out


def decode(data_url: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"),
                      dtype=np.int16)


# -- the page in a browser --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_app():
    app = TuneApp("--workers", "0", "--size", "64")
    yield app
    app.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Page:
    """The tuning page open in the browser, with what the tests read from it."""

    def __init__(self, page, url: str):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(url)
        self.wait_frames(1)

    def frames(self) -> int:
        return self.page.evaluate("window.tuneStats.frames")

    def wait_frames(self, n: int, timeout_s: float = 30) -> None:
        self.page.wait_for_function(f"window.tuneStats.frames >= {n}", timeout=timeout_s * 1000)

    def images(self) -> np.ndarray:
        """``int16 [cameras, seeds, H, W, 3]`` of the grid as shown."""
        rows = self.page.eval_on_selector_all(
            "#grid tr", "rows => rows.slice(1).map(r => [...r.querySelectorAll('img')].map(i => i.src))")
        return np.stack([np.stack([decode(src) for src in row]) for row in rows])

    def json(self) -> dict:
        return json.loads(self.page.inner_text("#json"))

    def component(self, name: str) -> dict:
        return next(c for c in self.json()["components"] if c["name"] == name)

    def panel(self, name: str):
        return self.page.locator(f'.panel[data-component="{name}"]')

    def control(self, component: str, prop: str):
        return self.panel(component).locator(f'.prop[data-prop="{prop}"]')

    def change_and_render(self, action) -> np.ndarray:
        """Runs ``action`` (which makes one accepted edit) and returns the grid that shows it."""
        seq = self.page.evaluate("window.__appSeq")
        action()
        self.page.wait_for_function(f"window.__appSeq > {seq}", timeout=30000)
        return self.images_after_settle()

    def images_after_settle(self) -> np.ndarray:
        """The grid once it shows the app's latest edit."""
        self.page.wait_for_function("window.tuneStats.frameSeq >= window.__appSeq", timeout=30000)
        return self.images()

    def revert(self) -> None:
        if self.page.inner_text("#diff").strip() != "(no change)":
            self.page.click("#reset")
            self.page.wait_for_function("document.querySelector('#diff').textContent === '(no change)'")


@pytest.fixture(scope="module")
def tune_page(browser, browser_app):
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    # the app's edit number, as the page learns it, so a test can wait for the grid that shows it
    page.add_init_script("""
        const _ws = window.WebSocket;
        window.WebSocket = function (...a) {
          const ws = new _ws(...a);
          ws.addEventListener('message', e => { const m = JSON.parse(e.data);
            if (m.type === 'state') window.__appSeq = m.seq; });
          return ws; };
        window.WebSocket.OPEN = _ws.OPEN;""")
    tuned = Page(page, browser_app.url)
    yield tuned
    assert not tuned.errors, f"the page raised: {tuned.errors}"
    context.close()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@needs_browser
def test_moving_a_slider_rerenders_the_grid_and_shows_the_value_in_the_json(tune_page):
    tune_page.revert()
    before = tune_page.images_after_settle()
    assert before.shape == (3, 4, 64, 64, 3)
    slider = tune_page.control("camera_randomizer", "fov_radius").locator("input[type=range]")
    after = tune_page.change_and_render(lambda: slider.fill("4"))
    assert tune_page.component("camera_randomizer")["config"]["floatProperties"]["fov_radius"] == 4.0
    assert mean_abs_diff(before, after) > 2.0
    number = tune_page.control("camera_randomizer", "fov_radius").locator("input[type=number]")
    assert float(number.input_value()) == 4.0
    diff = tune_page.page.inner_text("#diff").splitlines()
    assert [line.split()[-1] for line in diff if "fov_radius" in line] == ["1.0,", "4.0,"]
    assert [line[0] for line in diff if "fov_radius" in line] == ["-", "+"]


@needs_browser
def test_switching_a_component_off_and_on_restores_the_same_images(tune_page):
    tune_page.revert()
    before = tune_page.images_after_settle()
    switch = tune_page.panel("post_processing_randomizer").locator(".head .switch")
    off = tune_page.change_and_render(lambda: switch.click())
    assert tune_page.component("post_processing_randomizer")["config"]["boolProperties"]["enabled"] is False
    assert "disabled" in tune_page.panel("post_processing_randomizer").get_attribute("class")
    assert mean_abs_diff(before, off) > 1.0
    on = tune_page.change_and_render(lambda: switch.click())
    assert tune_page.component("post_processing_randomizer")["config"]["boolProperties"]["enabled"] is True
    assert np.array_equal(before, on)


@needs_browser
def test_adding_and_removing_a_component_changes_the_chain_and_the_images(tune_page):
    tune_page.revert()
    before = tune_page.images_after_settle()
    page = tune_page.page
    page.select_option("#add-type", "Hide")
    tune_page.change_and_render(lambda: page.click("#add"))
    assert [c["type"] for c in tune_page.json()["components"]][-1] == "Hide"
    name = tune_page.json()["components"][-1]["name"]
    field = tune_page.control(name, "geom_prefix").locator("input[type=text]")
    hidden = tune_page.change_and_render(lambda: (field.fill("cube"), field.press("Enter")))
    assert mean_abs_diff(before, hidden) > 1.0
    # moving it first rebuilds the renderer (a merge cannot reorder): the same images
    moved = tune_page.change_and_render(lambda: tune_page.panel(name).locator("button.up").click())
    assert [c["name"] for c in tune_page.json()["components"]].index(name) == len(tune_page.json()["components"]) - 2
    assert np.array_equal(hidden, moved)
    back = tune_page.change_and_render(lambda: tune_page.panel(name).locator("button.remove").click())
    assert name not in [c["name"] for c in tune_page.json()["components"]]
    assert tune_page.panel(name).count() == 0
    assert np.array_equal(before, back)


@needs_browser
def test_a_saved_config_loads_back_unchanged(tune_page, tmp_path):
    tune_page.revert()
    page = tune_page.page
    slider = tune_page.control("lighting_rig", "max_light_height").locator("input[type=range]")
    tune_page.change_and_render(lambda: slider.fill("2.5"))
    assert page.inner_text("#dirty") == "(unsaved edits)"
    with page.expect_download() as download:
        page.click("#save")
    saved = tmp_path / "saved.json"
    download.value.save_as(saved)
    page.wait_for_function("document.querySelector('#dirty').textContent === ''")
    assert json.loads(saved.read_text()) == tune_page.json()
    assert orrb.RendererConfig.load(saved)["lighting_rig"]["max_light_height"] == 2.5
    tune_page.revert()
    assert tune_page.component("lighting_rig")["config"]["floatProperties"].get("max_light_height") != 2.5
    tune_page.change_and_render(lambda: page.set_input_files("#load", str(saved)))
    assert tune_page.json() == json.loads(saved.read_text())
    value = tune_page.control("lighting_rig", "max_light_height").locator("input[type=number]").input_value()
    assert float(value) == 2.5


@needs_browser
def test_a_bad_value_shows_an_error_at_its_control_while_the_grid_keeps_updating(tune_page):
    tune_page.revert()
    page = tune_page.page
    count = tune_page.control("lighting_rig", "light_head_count")
    count.locator("input[type=number]").fill("-2")
    count.locator("input[type=number]").press("Enter")
    page.wait_for_function("""document.querySelector('.panel[data-component="lighting_rig"] '
                              + '.prop[data-prop="light_head_count"] .error').textContent !== ''""")
    assert "light_head_count must be >= 0" in count.locator(".error").inner_text()
    assert "light_head_count" not in json.dumps(tune_page.component("lighting_rig")["config"].get("intProperties", {})) \
        or tune_page.component("lighting_rig")["config"]["intProperties"]["light_head_count"] >= 0
    # the component's own check: a tracker camera that the scene lacks
    cams = tune_page.control("tracker", "camera_names").locator("input[type=text]")
    cams.fill("vision_cam_nowhere")
    cams.press("Enter")
    page.wait_for_function("""document.querySelector('.panel[data-component="tracker"] '
                              + '.prop[data-prop="camera_names"] .error').textContent !== ''""")
    assert "vision_cam_nowhere" in tune_page.control("tracker", "camera_names").locator(".error").inner_text()
    # the grid goes on rendering other edits, and the errors stay where they are
    before = tune_page.images_after_settle()
    slider = tune_page.control("camera_randomizer", "position_radius").locator("input[type=range]")
    after = tune_page.change_and_render(lambda: slider.fill("0.08"))
    assert mean_abs_diff(before, after) > 1.0
    assert "light_head_count must be >= 0" in count.locator(".error").inner_text()
    # a valid value clears the error
    count.locator("input[type=number]").fill("4")
    count.locator("input[type=number]").press("Enter")
    page.wait_for_function("""document.querySelector('.panel[data-component="lighting_rig"] '
                              + '.prop[data-prop="light_head_count"] .error').textContent === ''""")
    assert tune_page.component("lighting_rig")["config"]["intProperties"]["light_head_count"] == 4


@needs_browser
def test_a_malformed_upload_shows_a_banner_and_keeps_the_chain(tune_page, tmp_path):
    tune_page.revert()
    bad = tmp_path / "bad.json"
    bad.write_text('{"components": [{"type": "LightRandomiser", "name": "x"}]}')
    before = tune_page.json()
    tune_page.page.set_input_files("#load", str(bad))
    tune_page.page.wait_for_selector("#banner:not([hidden])")
    assert "LightRandomiser" in tune_page.page.inner_text("#banner-text")
    assert "did you mean 'LightRandomizer'" in tune_page.page.inner_text("#banner-text")
    assert tune_page.json() == before
    tune_page.page.click("#banner-close")


@needs_browser
def test_modality_state_and_seed_selectors_change_the_grid(tune_page):
    tune_page.revert()
    page = tune_page.page
    colour = tune_page.images_after_settle()
    before = tune_page.frames()
    page.select_option("#modality", "segmentation")
    tune_page.wait_frames(before + 1)
    segmentation = tune_page.images()
    assert mean_abs_diff(colour, segmentation) > 5.0
    assert len(np.unique(segmentation.reshape(-1, 3), axis=0)) < 64  # a few class colours (PNG, exact)
    before = tune_page.frames()
    page.select_option("#modality", "color")
    tune_page.wait_frames(before + 1)
    assert np.array_equal(tune_page.images(), colour)  # the same batch, re-encoded
    heads = page.eval_on_selector_all("#grid th.column", "hs => hs.map(h => h.textContent)")
    page.click("#seeds")
    page.wait_for_function(f"[...document.querySelectorAll('#grid th.column')].map(h => h.textContent).join() "
                           f"!== {json.dumps(','.join(heads))}")
    assert page.locator(".cell svg rect").count() == 12  # a tracker box on every image
    before = tune_page.frames()
    page.select_option("#state", "random")
    tune_page.wait_frames(before + 1)
    rows = page.eval_on_selector_all("#grid th.column", "hs => hs.map(h => h.textContent.split('row ')[1])")
    assert len(set(rows)) > 1


@needs_browser
def test_a_reload_shows_the_edited_chain_and_renders_again(tune_page, browser_app, browser):
    tune_page.revert()
    slider = tune_page.control("camera_randomizer", "quat_radius").locator("input[type=range]")
    tune_page.change_and_render(lambda: slider.fill("0.1"))
    edited = tune_page.json()
    page = tune_page.page
    page.reload()
    page.wait_for_function("window.tuneStats.frames >= 1")
    assert tune_page.json() == edited
    assert float(tune_page.control("camera_randomizer", "quat_radius").locator("input[type=number]")
                 .input_value()) == 0.1
    assert page.inner_text("#dirty") == "(unsaved edits)"
    assert page.evaluate("""(() => { const e = new Event('beforeunload', {cancelable: true});
                                     window.dispatchEvent(e); return e.defaultPrevented; })()""")
    tune_page.revert()
