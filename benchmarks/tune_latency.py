"""Latency of the tuning page: from a property change to the new grid shown in the browser.

Starts ``orrb tune`` (3 cameras x 4 seeds at 128 px, the shipped Dactyl chain, a pool of 2
render servers unless ``--workers`` says otherwise), opens the page in Debian's chromium
through Playwright and moves the ``fov_radius`` slider of ``camera_randomizer`` 50 times,
one change at a time. The page itself times each change: from sending it over the
WebSocket to the first grid that includes it, all 12 images decoded (``window.tuneStats``).
A second run drags the slider: 40 changes 25 ms apart; it reports how many grids were drawn
(latest wins: far fewer than the changes) and the time from the last change to its grid.

    python benchmarks/tune_latency.py [--quick] [--workers 2] [--changes 50] [--size 128]

Target on 2 CPU cores: p50 < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

import orrb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10 changes and a short drag (a smoke run)")
    p.add_argument("--workers", type=int, default=2, help="render servers; 0: LocalRenderer (default 2)")
    p.add_argument("--changes", type=int, default=50, help="changes timed one at a time (default 50)")
    p.add_argument("--size", type=int, default=128, help="image width and height in pixels (default 128)")
    args = p.parse_args()
    changes, drag = (10, 10) if args.quick else (args.changes, 40)
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("tune_latency: needs Debian's chromium (apt-get install -y chromium)")
    command = [sys.executable, "-m", "orrb", "tune", "--port", "0", "--workers", str(args.workers),
               "--size", str(args.size), "--seeds", "4",
               "--cameras", "vision_cam_left,vision_cam_right,vision_cam_top"]
    if args.workers:
        command += ["--base-port", str(orrb.utils.free_base_port(args.workers))]
    app = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = app.stdout.readline()
        match = re.search(r"serving (http://\S+/)", line)
        if not match:
            sys.exit(f"tune_latency: orrb tune did not start: {line}{app.stdout.read()}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(match.group(1))
            page.wait_for_function("window.tuneStats.frames >= 1", timeout=120000)
            slider = page.locator('.panel[data-component="camera_randomizer"] .prop[data-prop="fov_radius"] '
                                  'input[type=range]')
            values = np.linspace(0.5, 4.5, 9)
            for i in range(3):  # warm-up
                slider.fill(f"{values[i % len(values)]:.2f}")
                page.wait_for_function(f"window.tuneStats.latencies.length >= {i + 1}", timeout=60000)
            page.evaluate("window.tuneStats.latencies = []")
            for i in range(changes):
                slider.fill(f"{values[(i + 3) % len(values)]:.2f}")
                page.wait_for_function(f"window.tuneStats.latencies.length >= {i + 1}", timeout=60000)
            latencies = np.array(page.evaluate("window.tuneStats.latencies"))
            # a drag: changes 25 ms apart, then the time from the last one to its grid
            frames_before = page.evaluate("window.tuneStats.frames")
            page.evaluate("window.tuneStats.latencies = []")
            started = time.perf_counter()
            page.evaluate(f"""async () => {{
                const s = document.querySelector('.panel[data-component="camera_randomizer"] '
                                                 + '.prop[data-prop="fov_radius"] input[type=range]');
                for (let i = 0; i < {drag}; i++) {{
                    s.value = (0.5 + 4 * (i % 17) / 16).toFixed(3);
                    s.dispatchEvent(new Event('input'));
                    await new Promise(r => setTimeout(r, 25));
                }}
                s.value = '2.345'; s.dispatchEvent(new Event('input'));
                window.lastDragValue = Number(s.value);  // as the slider's step left it
            }}""")
            page.wait_for_function("window.tuneStats.pending() === 0 && document.querySelector('#json').textContent"
                                   ".includes('\"fov_radius\": ' + window.lastDragValue)", timeout=60000)
            drag_wall = time.perf_counter() - started
            last_change = page.evaluate("window.tuneStats.latencies[window.tuneStats.latencies.length - 1]")
            drag_frames = page.evaluate("window.tuneStats.frames") - frames_before
            browser.close()
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
        app.stdout.close()
    renderer = f"a pool of {args.workers} servers" if args.workers else "LocalRenderer"
    print(f"orrb tune, 3 cameras x 4 seeds at {args.size}x{args.size}, the Dactyl chain, {renderer}; "
          f"{os.cpu_count()} CPUs")
    print(f"{len(latencies)} changes one at a time: p50 {np.percentile(latencies, 50):.3f} s, "
          f"p95 {np.percentile(latencies, 95):.3f} s, mean {statistics.fmean(latencies):.3f} s, "
          f"max {latencies.max():.3f} s")
    print(f"a drag of {drag + 1} changes 25 ms apart ({(drag * 0.025):.1f} s): {drag_frames} grids drawn, "
          f"the last change on the page {last_change:.3f} s after it was made ({drag_wall:.2f} s in all)")
    print(f"ratio: p50 change-to-grid latency = {np.percentile(latencies, 50):.3f} s (target < 0.5)")


if __name__ == "__main__":
    main()
