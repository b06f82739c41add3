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
pytest.importorskip("websockets", reason="orrb tune needs the tune extra: pip install \"orrb[tune]\"")
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
def test_vector_and_enum_controls_set_their_properties(tune_page):
    tune_page.revert()
    before = tune_page.images_after_settle()
    z = tune_page.control("camera_randomizer", "orbit_center").locator('input[data-axis="z"]')
    tune_page.change_and_render(lambda: (z.fill("0.25"), z.press("Enter")))
    assert tune_page.component("camera_randomizer")["config"]["vector3Properties"]["orbit_center"] == \
        {"x": 0.0, "y": 0.0, "z": 0.25}
    mode = tune_page.control("camera_randomizer", "mode").locator("select")
    after = tune_page.change_and_render(lambda: mode.select_option("Orbit"))
    assert tune_page.component("camera_randomizer")["config"]["enumProperties"]["mode"] == "Orbit"
    assert mean_abs_diff(before, after) > 1.0


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


# -- bad input: the app answers with errors and keeps serving ----------------------------------------
SECRET = "tune-test-secret-4711"


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory):
    """An app with a shared secret and an --out file, in a folder of its own."""
    folder = tmp_path_factory.mktemp("guarded")
    (folder / "secret").write_text(SECRET + "\n")
    app = TuneApp("--workers", "0", "--size", "32", "--cameras", "vision_cam_top", "--seeds", "1",
                  "--out", str(folder / "tuned.json"),
                  "--secret-file", str(folder / "secret"))
    app.folder = folder
    yield app
    app.close()


def raw_request(app, method: str, target: str, body: bytes | None = None, headers: dict | None = None):
    """One raw request (the target is sent as given, not normalized); returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in {"Host": f"127.0.0.1:{app.port}", **(headers or {})}.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def login_cookie(app) -> str:
    status, headers, _ = raw_request(app, "GET", f"/?token={SECRET}")
    assert status == 303
    return headers["set-cookie"].split(";")[0]


def ws_connect(app, cookie: str | None, **kwargs):
    from websockets.sync.client import connect

    headers = {"Cookie": cookie} if cookie else {}
    return connect(f"ws://127.0.0.1:{app.port}/ws", additional_headers=headers, open_timeout=10, **kwargs)


def replies(ws, until: str, timeout_s: float = 20) -> list[dict]:
    """Messages received up to and including the first of type ``until``."""
    out = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        message = json.loads(ws.recv(timeout=deadline - time.time()))
        out.append(message)
        if message["type"] == until:
            return out
    raise AssertionError(f"no {until!r} message within {timeout_s} s; got {[m['type'] for m in out]}")


def test_the_page_needs_the_shared_secret(guarded_app):
    status, headers, _ = raw_request(guarded_app, "GET", "/")
    assert status == 303 and headers["location"] == "/login"
    status, _, body = raw_request(guarded_app, "POST", "/login", b"secret=wrong",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401 and b"wrong secret" in body
    status, headers, _ = raw_request(guarded_app, "POST", "/login", f"secret={SECRET}".encode(),
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["set-cookie"].startswith("orrb_tune=")
    cookie = headers["set-cookie"].split(";")[0]
    status, _, body = raw_request(guarded_app, "GET", "/", headers={"Cookie": cookie})
    assert status == 200 and b"/static/app.js" in body
    status, _, body = raw_request(guarded_app, "GET", "/config.json", headers={"Cookie": "orrb_tune=forged"})
    assert status == 303
    from websockets.exceptions import InvalidStatus, ConnectionClosed

    with pytest.raises((InvalidStatus, ConnectionClosed)):
        with ws_connect(guarded_app, None) as ws:
            ws.send(json.dumps({"op": "hello"}))
            ws.recv(timeout=5)


def test_requests_naming_another_host_or_origin_are_refused(guarded_app):
    cookie = login_cookie(guarded_app)
    status, _, _ = raw_request(guarded_app, "GET", "/", headers={"Cookie": cookie, "Host": "attacker.example:80"})
    assert status == 421
    from websockets.exceptions import InvalidStatus, ConnectionClosed

    with pytest.raises((InvalidStatus, ConnectionClosed)):
        with ws_connect(guarded_app, cookie, origin="http://attacker.example") as ws:
            ws.send(json.dumps({"op": "hello"}))
            ws.recv(timeout=5)


def test_malformed_and_oversized_websocket_messages_get_errors_and_the_app_keeps_serving(guarded_app):
    cookie = login_cookie(guarded_app)
    outside = guarded_app.folder.parent / "written_by_tune.json"
    before = sorted(p.name for p in guarded_app.folder.parent.iterdir())
    bad = [
        ("not json {", "malformed JSON"),
        ("[1, 2, 3]", 'expected a JSON object with an "op"'),
        (json.dumps({"op": 7}), 'expected a JSON object with an "op"'),
        (json.dumps({"op": "../../etc/passwd"}), "unknown op"),
        (json.dumps({"op": "__init__"}), "unknown op"),
        (json.dumps({"op": "set", "component": "nope", "property": "x", "value": 1}), "no component named 'nope'"),
        (json.dumps({"op": "set", "component": "camera_randomizer", "property": "fov_radius", "value": "wide"}),
         "expects a finite number"),
        ('{"op": "set", "component": "camera_randomizer", "property": "fov_radius", "value": NaN}',
         "expects a finite number"),
        (json.dumps({"op": "set", "component": "camera_randomizer", "property": "fov_radiuss", "value": 1}),
         "did you mean 'fov_radius'"),
        (json.dumps({"op": "set", "component": ["a"], "property": {}, "value": None}), "'property' must be"),
        (json.dumps({"op": "move", "component": "camera_randomizer", "to": 99}), "position must be in"),
        (json.dumps({"op": "add", "type": "../Hide"}), "unknown component type"),
        (json.dumps({"op": "view", "state": 10**9}), "state must be a row"),
        (json.dumps({"op": "view", "modality": "x-ray"}), "modality must be one of"),
        (json.dumps({"op": "load", "text": "{\"components\": 5}"}), "expected an object"),
        (json.dumps({"op": "load", "text": 12}), "expected the file's text"),
        (json.dumps({"op": "save", "path": str(outside)}), "cannot choose a path"),
        (json.dumps({"op": "save", "filename": "../written_by_tune.json"}), "cannot choose a path"),
        (json.dumps({"op": "set", "component": "camera_randomizer", "property": "path",
                     "value": "x" * 5000}), "at most 1000 characters"),
        (json.dumps({"op": "load", "text": "x" * 600_000}), "message too large"),
    ]
    with ws_connect(guarded_app, cookie, max_size=None) as ws:
        ws.send(json.dumps({"op": "hello"}))
        replies(ws, "hello")
        for text, expected in bad:
            ws.send(text)
            got = replies(ws, "error")[-1]
            assert expected in got["message"], (text[:80], got["message"])
        ws.send(b"\x00\x01binary")
        assert "JSON text" in replies(ws, "error")[-1]["message"]
        ws.send(json.dumps({"op": "set", "component": "camera_randomizer", "property": "fov_radius", "value": 3,
                            "ref": 1}))
        assert replies(ws, "ack")[-1]["ref"] == 1
        assert replies(ws, "frame", timeout_s=30)[-1]["images"][0][0].startswith("data:image/jpeg;base64,")
    # a message over the server's own limit ends that connection only
    from websockets.exceptions import ConnectionClosed

    with ws_connect(guarded_app, cookie, max_size=None) as ws:
        with pytest.raises(ConnectionClosed):
            ws.send("x" * 2_000_000)
            for _ in range(10):
                ws.recv(timeout=10)
    with ws_connect(guarded_app, cookie) as ws:
        ws.send(json.dumps({"op": "hello"}))
        state = [m for m in replies(ws, "status") if m["type"] == "state"][-1]
        assert '"fov_radius": 3.0' in state["json"]
        ws.send(json.dumps({"op": "save"}))
        assert replies(ws, "saved")[-1]["path"] == str(guarded_app.folder / "tuned.json")
    assert json.loads((guarded_app.folder / "tuned.json").read_text())["components"][0]["config"][
        "floatProperties"]["fov_radius"] == 3.0
    assert not outside.exists()
    assert sorted(p.name for p in guarded_app.folder.parent.iterdir()) == before


def test_path_traversal_and_oversized_http_requests_are_refused(guarded_app):
    cookie = login_cookie(guarded_app)
    canary = guarded_app.folder / "canary.js"
    canary.write_text("CANARY-6f1d")
    static = os.path.join(os.path.dirname(orrb.__file__), "tune", "static")
    relative = os.path.relpath(canary, static)
    for target in ["/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/cli/tune.py",
                   "/static/" + relative, "/static/" + relative.replace("/", "%2f"), "/static/%2fetc%2fpasswd",
                   "/static//etc/passwd", "/static/app.js%00.png", "/static/../../../../../../etc/passwd",
                   "/static/" + "a" * 5000 + ".js", f"/static/{canary}"]:
        status, _, body = raw_request(guarded_app, "GET", target, headers={"Cookie": cookie})
        assert status in (400, 404), (target, status)
        assert b"CANARY" not in body and b"root:" not in body and b"import" not in body
    status, _, body = raw_request(guarded_app, "GET", "/static/app.js", headers={"Cookie": cookie})
    assert status == 200 and b"tuneStats" in body
    status, _, _ = raw_request(guarded_app, "POST", "/login", b"secret=" + b"x" * 60_000,
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413
    try:  # the server answers 400 or drops the connection with the headers unread
        status = raw_request(guarded_app, "GET", "/", headers={"Cookie": cookie, "X-Big": "y" * 200_000})[0]
    except (ConnectionResetError, BrokenPipeError):
        status = "dropped"
    assert status in (400, 431, "dropped")
    status, headers, body = raw_request(guarded_app, "GET", "/config.json?path=/etc/passwd", headers={"Cookie": cookie})
    assert status == 200 and json.loads(body)["frame"] == "mujoco"
    assert 'filename="tuned.json"' in headers["content-disposition"]
    status, _, body = raw_request(guarded_app, "GET", "/", headers={"Cookie": cookie})
    assert status == 200


def test_a_non_loopback_bind_without_a_secret_is_refused():
    env = {k: v for k, v in os.environ.items() if k != "ORRB_SECRET"}
    done = subprocess.run([sys.executable, "-m", "orrb", "tune", "--bind", "0.0.0.0", "--port", "0",
                           "--workers", "0"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert "refusing to bind 0.0.0.0 without a shared secret" in done.stderr


def test_a_pool_shows_what_a_local_renderer_renders_after_edits_and_a_removal(dactyl_states):
    """The default renderer is a pool: property edits reach it through ``update()``, a removal
    through a new pool; the page's lossless pictures equal a ``LocalRenderer``'s of the same chain."""
    app = TuneApp("--workers", "1", "--base-port", str(orrb.utils.free_base_port(1)), "--size", "32",
                  "--seeds", "2", "--cameras", "vision_cam_top,vision_cam_left")
    try:
        with ws_connect(app, None) as ws:
            ws.send(json.dumps({"op": "hello"}))
            chain = orrb.RendererConfig.from_json(
                [m for m in replies(ws, "status") if m["type"] == "state"][-1]["json"])
            edits = [{"op": "view", "modality": "normals"},
                     {"op": "set", "component": "camera_randomizer", "property": "fov_radius", "value": 6},
                     {"op": "remove", "component": "camera_randomizer"},
                     {"op": "set", "component": "lighting_rig", "property": "light_head_count", "value": 2}]
            for ref, edit in enumerate(edits, 1):
                ws.send(json.dumps({**edit, "ref": ref}))
                messages = replies(ws, "ack")
                seq = messages[-1]["seq"]
                messages += replies(ws, "frame", timeout_s=60)
                while messages[-1]["seq"] < seq or messages[-1]["modality"] != "normals":
                    messages += replies(ws, "frame", timeout_s=60)
                frame = messages[-1]
                state = [m for m in messages if m["type"] == "state"]
                chain = orrb.RendererConfig.from_json(state[-1]["json"]) if state else chain
                config = orrb.RemoteRendererConfig(
                    camera_names=["vision_cam_top", "vision_cam_left"], image_width=32, image_height=32,
                    model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping",
                    asset_basedir=orrb.utils.package_relative_path("assets"), render_normals=True)
                with orrb.LocalRenderer(config, chain) as local:
                    seeds = [c["seed"] for c in frame["columns"]]
                    rows = [c["row"] for c in frame["columns"]]
                    expected = local.render_batch({"qpos": dactyl_states[rows], "seeds": np.array(seeds)})
                    for i, camera in enumerate(config.camera_names):
                        output = local.layout[camera + "_normals"]
                        pictures = output.picture(expected[output.key])
                        for j in range(2):
                            assert np.array_equal(decode(frame["images"][i][j]), pictures[j]), (edit, camera, j)
            assert "camera_randomizer" not in chain and chain["lighting_rig"]["light_head_count"] == 2
    finally:
        output = app.close()
    assert app.process.returncode == 0 and output.strip().endswith("orrb tune: stopped")  # SIGTERM: a clean stop


# -- the session and the controls, without a browser -------------------------------------------------
def test_every_component_property_gets_a_control_and_the_shipped_configs_are_within_the_limits():
    from orrb.components.base import registry
    from orrb.components.properties import property_specs
    from orrb.tune.controls import describe_types, range_errors

    described = describe_types()
    assert sorted(described) == sorted(registry())
    for type_name, cls in registry().items():
        controls = {c["name"]: c for c in described[type_name]["properties"]}
        assert list(controls) == list(property_specs(cls.Properties))
        for name, c in controls.items():
            if c["kind"] in ("int", "float"):
                assert c["min"] < c["max"] and c["step"] > 0, (type_name, name, c)
    folder = orrb.utils.package_relative_path("assets")
    files = [f for f in os.listdir(folder) if f.endswith(".renderer_config.json")]
    assert files
    for name in files:
        for spec in orrb.RendererConfig.load(os.path.join(folder, name)):
            values = {n: s.default for n, s in property_specs(spec.component_class.Properties).items()}
            values.update(spec.properties)
            assert range_errors(spec.type, values) == {}, (name, spec.name)


def test_every_shipped_number_property_declares_its_range_and_its_default_lies_within_it():
    from orrb.components.base import registry
    from orrb.components.properties import prop, property_specs

    shipped = {n: cls for n, cls in registry().items() if cls.__module__.startswith("orrb.components.")}
    assert len(shipped) == 13
    for type_name, cls in shipped.items():
        for spec in property_specs(cls.Properties).values():
            if spec.kind not in ("int", "float"):
                assert (spec.low, spec.high, spec.span) == (None, None, None), (type_name, spec.name)
                continue
            assert spec.span is not None, f"{type_name}.{spec.name} declares no span"
            lo, hi = spec.span
            assert lo <= spec.default <= hi, (type_name, spec.name, spec.span, spec.default)
            if spec.low is not None:
                assert spec.low <= lo and (spec.default > spec.low or not spec.low_open), (type_name, spec.name)
            if spec.high is not None:
                assert hi <= spec.high, (type_name, spec.name)
    with pytest.raises(TypeError, match="only int and float properties"):
        prop("a", "a string", low=0.0)
    with pytest.raises(TypeError, match="lo < hi"):
        prop(1.0, "a number", span=(2.0, 1.0))


@pytest.mark.parametrize("component, prop, value, message", [
    ("light_randomizer", "min_light_intensity", 9.0, "min_light_intensity (9) must be <= max_light_intensity (5)"),
    ("cube_face_randomizer", "min_saturation", 1.5, "min_saturation must be <= 1 and >= 0, got 1.5"),
    ("camera_randomizer", "fov_radius", -1.0, "fov_radius must be >= 0, got -1"),
    ("camera_randomizer", "mode", "Spin", "one of ['Jitter', 'Orbit', 'Both']"),
    ("tracker", "tracked_object_names", "cube,sphere_nowhere", "'sphere_nowhere' names no body, geom or site"),
    ("lighting_rig", "light_head_count", float("nan"), "'light_head_count' expects an int, got nan"),
    ("lighting_rig", "light_head_count", 10**400, "light_head_count must be <= 100 and >= 0"),
])
def test_an_edit_out_of_limits_or_refused_by_its_component_changes_nothing(component, prop, value, message):
    from orrb.tune.session import EditError, TuneSession

    config = orrb.RemoteRendererConfig(camera_names=["vision_cam_top"], image_width=32, image_height=32,
                                       model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping",
                                       asset_basedir=orrb.utils.package_relative_path("assets"))
    chain = orrb.RendererConfig.load(orrb.utils.package_relative_path("assets/dactyl.renderer_config.json"))
    session = TuneSession(config, chain, np.zeros((1, 31)), lambda c, rc: orrb.LocalRenderer(c, rc).start())
    with pytest.raises(EditError, match=re.escape(message)) as raised:
        session.set_property(component, prop, value)
    assert (raised.value.component, raised.value.property) == (component, prop)
    assert session.chain == chain and session.seq == 0


def test_a_starting_file_outside_the_limits_opens_with_a_warning_and_other_edits_apply():
    from orrb.tune.session import TuneSession

    config = orrb.RemoteRendererConfig(camera_names=["vision_cam_top"], image_width=32, image_height=32,
                                       model_xml_path="dactyl.xml", model_mapping_path="dactyl.mapping",
                                       asset_basedir=orrb.utils.package_relative_path("assets"))
    chain = orrb.RendererConfig()
    chain.add("LightRandomizer", "lights", min_light_intensity=5.0, max_light_intensity=2.0)
    chain.add("CameraRandomizer", "camera")
    session = TuneSession(config, chain, np.zeros((1, 31)), lambda c, rc: orrb.LocalRenderer(c, rc).start())
    assert session.warnings == ["renderer config: component 'lights' (LightRandomizer): "
                                "min_light_intensity (5) must be <= max_light_intensity (2)"]
    session.set_property("camera", "fov_radius", 2.0)
    assert session.chain["camera"]["fov_radius"] == 2.0 and session.seq == 1
    session.set_property("lights", "min_light_intensity", 1.0)
    session.reset()  # back to the starting file, its values outside the limits included
    assert session.chain == chain and session.seq == 3


def test_a_failed_render_keeps_the_edits_accepted_while_it_ran(make_dactyl_config, dactyl_states):
    # regression: a render failing for an unrelated reason (a server timing out) reverted the
    # chain to the last one that rendered, dropping an edit the page had already accepted
    import threading

    from orrb.errors import RendererError
    from orrb.tune.session import TuneSession

    config = make_dactyl_config(camera_names=["vision_cam_left"], image_width=32, image_height=32)
    chain = orrb.RendererConfig.load(config.resolve("dactyl.renderer_config.json"))
    calls: list[int] = []
    failing = threading.Event()

    class SecondBatchFails:
        """A real LocalRenderer whose second batch fails after a while, as one on a lost server would."""

        def __init__(self, config, renderer_config):
            self.inner = orrb.LocalRenderer(config, renderer_config)

        def render_batch(self, batch):
            calls.append(len(batch["qpos"]))
            if len(calls) == 2:
                failing.set()
                time.sleep(1.0)
                raise RendererError("server timed out")
            return self.inner.render_batch(batch)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    session = TuneSession(config, chain, dactyl_states, SecondBatchFails).start()
    try:
        deadline = time.monotonic() + 60
        while not calls and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        session.set_view(new_seeds=True)  # the second batch: it fails after 1 s
        assert failing.wait(60)
        session.set_property("camera_randomizer", "position_radius", 0.02)  # accepted while it runs
        deadline = time.monotonic() + 60
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls) >= 3, "the accepted edit was never rendered"
        assert session.chain["camera_randomizer"].properties["position_radius"] == 0.02
    finally:
        session.close()
