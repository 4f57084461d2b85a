"""The playground in a real browser: Debian's chromium, driven by Playwright for Python.

The app is served by uvicorn on 127.0.0.1 on a free port, in a background thread that the test
stops. The browser is the system's ``chromium`` (``executable_path``; Playwright never downloads
one here). The test skips only where no chromium is installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import sync_playwright

from trainlab.playground.app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def server():
    """The playground on 127.0.0.1:<free port>, stopped (and joined) at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app()
    config = uvicorn.Config(app, log_level="warning", ws="auto", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        srv.should_exit = True
        thread.join(timeout=20)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (Debian: apt-get install chromium); "
                                             "the playground's browser test needs it")
def test_preset_play_loss_histograms_diagnosis_and_screenshot(server, tmp_path):
    url, app = server
    shot = Path(os.environ.get("TRAINLAB_PLAYGROUND_SHOT", tmp_path / "playground.png"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            page.wait_for_selector("#conn.on", timeout=15_000)
            page.click("button[data-preset=tanh-small-vanish]")
            page.wait_for_function("window.playground.ready && window.playground.ready.state.query"
                                   ".includes('init=small_random')", timeout=15_000)
            assert "depth=10" in page.url and "act=tanh" in page.url and "seed=0" in page.url
            assert "activations vanish" in page.inner_text("#claim")
            page.click("#play")
            page.wait_for_function("window.playground.step >= 40", timeout=30_000)
            count = ("() => { const s = window.playground.sides[0]; return {loss: window.playground.charts.loss"
                     ".data[1].filter(v => v !== null).length, hist: s.hist.length}; }")
            first = page.evaluate(count)
            page.wait_for_function(f"window.playground.step >= {page.evaluate('window.playground.step') + 40}",
                                   timeout=30_000)
            page.wait_for_timeout(300)      # one more render
            second = page.evaluate(count)
            assert second["loss"] > first["loss"] > 0, (first, second)      # the loss curve grows
            assert second["hist"] > first["hist"] > 0, (first, second)      # new histogram columns
            inked = page.evaluate("""() => {
                const c = document.querySelector('.hist-act'); const d = c.getContext('2d')
                  .getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i + 2] > d[i] + 60) n++;
                return n; }""")
            assert inked > 200, inked                                         # the strips are drawn
            findings = page.inner_text(".side .findings")
            assert "vanishing activations" in findings and "tanh" in findings, findings
            page.click("#play")
            assert app.state.registry.count == 1
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            assert not errors, errors
            page.close()
        finally:
            browser.close()
