"""Screenshot TensorBoard's histogram dashboard on a real trainlab run (the README's picture).

1. trains ``examples/mlp.toml`` with ``--tensorboard`` into a temporary folder (or uses ``--logdir``:
   a folder of runs, e.g. ``runs``);
2. starts ``tensorboard --logdir ... --host 127.0.0.1`` on a free port and waits for it;
3. opens the histogram dashboard in headless Chromium (Debian's ``chromium``, driven by
   Playwright for Python, no browser download), waits for the charts, and saves a PNG;
4. stops TensorBoard.

Usage::

    .venv/bin/python scripts/tensorboard_screenshot.py --out docs/images/tensorboard_histograms.png

Needs ``pip install -e ".[test]"`` (tensorboard, playwright) and ``apt-get install chromium``.
Every wait is bounded (``--timeout`` seconds); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(out: Path, epochs: int) -> Path:
    trainlab = str(Path(sys.executable).with_name("trainlab"))
    subprocess.run([trainlab, "train", "--config", str(ROOT / "examples" / "mlp.toml"), "--tensorboard",
                    "--set", f'run.out="{out}"', "--epochs", str(epochs), "--quiet"], check=True, cwd=ROOT, timeout=600)
    return out


def wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"TensorBoard did not answer at {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "tensorboard_histograms.png")
    parser.add_argument("--logdir", type=Path, help="use these event files instead of training")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--dashboard", default="histograms", help="histograms, scalars, text, hparams, ...")
    parser.add_argument("--tags", default="activation", help="the dashboard's tag filter (a regex)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=950)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to let the charts render")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        logdir = args.logdir or train(Path(tmp) / "runs", args.epochs)   # run "digits-mlp/tb"
        port = free_port()
        board = subprocess.Popen([str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(logdir),
                                  "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + args.timeout
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/data/runs", deadline)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(f"{base}/#{args.dashboard}&tagFilter={args.tags}", timeout=args.timeout * 1000)
                page.wait_for_load_state("networkidle", timeout=args.timeout * 1000)
                page.wait_for_timeout(args.settle * 1000)   # the charts load their data and animate in
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            board.terminate()
            board.wait(timeout=30)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
