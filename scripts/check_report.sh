#!/usr/bin/env bash
# Render a trainlab report.html in headless Chromium with the network off, save a screenshot,
# and check that every embedded figure appears, pixel for pixel, in the rendered page.
#
# Usage: scripts/check_report.sh [REPORT_HTML] [SCREENSHOT_PNG]
#        (defaults: lab/report.html and the same path with .png)
# Env:   WIDTH (default 1280) and HEIGHT (default 16000) of the headless window; PYTHON (default
#        .venv/bin/python, else python3) with numpy and Pillow.
# Needs: Debian's chromium package (apt-get install chromium).
# Exit:  0 when every figure was found in the screenshot, 1 when one was not, 2 on a setup error.
set -euo pipefail

report=${1:-lab/report.html}
shot=${2:-${report%.html}.png}
width=${WIDTH:-1280}
height=${HEIGHT:-16000}
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}

[ -f "$report" ] || { echo "no such report: $report" >&2; exit 2; }
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "chromium not found (Debian: apt-get install chromium)" >&2; exit 2; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$shot"
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
    --hide-scrollbars --user-data-dir="$profile" --screenshot="$shot" --window-size="$width,$height" \
    "file://$(realpath "$report")" >/dev/null 2>"$profile/chromium.log" || true
[ -s "$shot" ] || { echo "chromium wrote no screenshot:" >&2; tail -20 "$profile/chromium.log" >&2; exit 2; }

"$python" - "$report" "$shot" <<'PY'
"""Find each embedded image's middle row, byte for byte, in some row of the screenshot."""
import base64, html, io, re, sys

import numpy as np
from PIL import Image

text = open(sys.argv[1], encoding="utf-8").read()
shot = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
for bad in ("http://", "https://", "<script", "<link", "url("):
    if bad in text:
        sys.exit(f"FAIL: the report contains {bad!r}")
uris = re.findall(r'<img src="data:image/(?:png|gif);base64,([^"]+)"', text)
caps = re.findall(r"<figcaption>(.*?)</figcaption>", text)
rows = [r.tobytes() for r in shot]
missing = 0
for i, data in enumerate(uris):
    label = html.unescape(caps[i])[:70] if i < len(caps) else ""
    try:
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA"))
    except Exception as exc:  # a corrupt data URI cannot render either
        missing += 1
        print(f"  MISSING figure {i + 1} (cannot decode: {exc}): {label}")
        continue
    rgb = img[..., :3].astype(float) * (img[..., 3:] / 255.0) + 255.0 * (1 - img[..., 3:] / 255.0)
    rgb = np.round(rgb).astype(np.uint8)
    h, w = rgb.shape[:2]
    if w > shot.shape[1] - 64:
        print(f"  ? figure {i + 1} is {w} px wide, wider than the page: it is scaled, not checked")
        continue
    # a row with detail (not plain background) in the middle third of the image
    candidates = sorted(range(h // 3, 2 * h // 3 + 1), key=lambda r: -len(np.unique(rgb[r], axis=0)))
    needle = rgb[candidates[0]].tobytes()
    found = [y for y, row in enumerate(rows) if row.find(needle) >= 0 and row.find(needle) % 3 == 0]
    if found:
        print(f"  ok figure {i + 1} ({w}x{h}) rendered at y ~ {found[0] - candidates[0]}: {label}")
    else:
        missing += 1
        print(f"  MISSING figure {i + 1} ({w}x{h}): {label}")
print(f"{len(uris)} figures embedded, {len(uris) - missing} found in the screenshot {sys.argv[2]} "
      f"({shot.shape[1]}x{shot.shape[0]})")
sys.exit(1 if missing or not uris else 0)
PY
