"""The HTML report: self-contained (figures as data URIs, nothing external), escaped, renders in Chromium."""

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainlab import __version__
from trainlab.experiments.common import StudyResult, Table, Verdict
from trainlab.report import REPORT_NAME, load_results, main, render_html, write_report

# pure colours that matplotlib's defaults and the report's CSS never draw
PNG_COLOR = (255, 0, 255)
GIF_COLOR = (0, 255, 255)
FIG_SIZE = (320, 200)


def image_bytes(fmt: str, color: tuple[int, int, int], size=FIG_SIZE) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def synthetic(tmp_path, name="init-depth", relative=True):
    """A StudyResult with one PNG, one GIF, a passing and a failing verdict, and text to escape."""
    png, gif = tmp_path / "fig.png", tmp_path / "anim.gif"
    png.write_bytes(image_bytes("PNG", PNG_COLOR))
    gif.write_bytes(image_bytes("GIF", GIF_COLOR))
    return StudyResult(
        name=name,
        title="Synthetic <study> & co",
        summary="Summary with <script>alert('x')</script> & \"quotes\"",
        command="trainlab experiment init-depth --quick --out 'a b'",
        verdicts=[
            Verdict("claim <one>", 0.123456, "x < 0.2 & y > 1", True, "detail <d>"),
            Verdict("claim two", "2 of 3", "all", False),
        ],
        figures={
            "a PNG <caption>": png.name if relative else str(png),
            "a GIF caption": gif.name if relative else str(gif),
        },
        tables=[Table("table <t>", ["col <a>", "b"], [["x<y", 1.5], ["z", 3]])],
        numbers={"k": [1, 2]},
        seconds=1.25,
    )


def test_figures_are_embedded_as_data_uris(tmp_path):
    result = synthetic(tmp_path)
    path = write_report([result], tmp_path)
    assert path == tmp_path / REPORT_NAME
    text = path.read_text(encoding="utf-8")
    png_uri = "data:image/png;base64," + base64.b64encode((tmp_path / "fig.png").read_bytes()).decode()
    gif_uri = "data:image/gif;base64," + base64.b64encode((tmp_path / "anim.gif").read_bytes()).decode()
    assert f'src="{png_uri}"' in text
    assert f'src="{gif_uri}"' in text
    assert text.count("<img ") == 2
    assert 'class="missing"' not in text


def test_nothing_external(tmp_path):
    text = write_report([synthetic(tmp_path)], tmp_path).read_text()
    for forbidden in (
        "http://",
        "https://",
        'src="/',
        "src='/",
        "<script",
        "<link",
        "@import",
        "url(",
        "file:",
    ):
        assert forbidden not in text, forbidden
    # every src and href is a data URI or an in-page anchor
    for attr in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attr.startswith(("data:image/", "#")), attr[:40]


def test_text_is_escaped(tmp_path):
    text = write_report([synthetic(tmp_path)], tmp_path).read_text()
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in text
    assert "Synthetic &lt;study&gt; &amp; co" in text
    assert "claim &lt;one&gt;" in text and "x &lt; 0.2 &amp; y &gt; 1" in text
    assert "a PNG &lt;caption&gt;" in text and "table &lt;t&gt;" in text and "x&lt;y" in text
    assert "--out &#x27;a b&#x27;" in text


def test_header_claims_table_and_sections(tmp_path):
    text = write_report([synthetic(tmp_path)], tmp_path).read_text()
    assert f"trainlab {__version__}" in text
    assert re.search(r"generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", text)
    assert "1 of 2 claims pass" in text
    assert "0.1235" in text  # measured, 4 significant digits
    assert ">PASS<" in text and ">FAIL<" in text
    assert 'class="verdict pass"' in text and 'class="verdict fail"' in text
    assert "<pre><code>trainlab experiment init-depth --quick" in text
    assert "wall time 1.2 s" in text or "wall time 1.3 s" in text
    assert '<section id="study-0-init-depth">' in text and 'href="#study-0-init-depth"' in text


def test_studies_in_registry_order(tmp_path):
    a, b = synthetic(tmp_path, "depth-30"), synthetic(tmp_path, "init-depth")
    text, missing = render_html([a, b], bases=[tmp_path])
    assert not missing
    assert text.index('id="study-0-init-depth"') < text.index('id="study-1-depth-30"')


def test_missing_figure_is_visible_not_broken(tmp_path):
    result = synthetic(tmp_path)
    result.figures["gone"] = "nowhere.png"
    text, missing = render_html([result], bases=[tmp_path])
    assert missing == ["init-depth: not found: nowhere.png"]
    assert 'class="missing"' in text and "nowhere.png" in text
    assert text.count("<img ") == 2


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_report([synthetic(tmp_path)], tmp_path)
    write_report([synthetic(tmp_path)], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anim.gif", "fig.png", REPORT_NAME]


def test_main_loads_study_json_ignores_other_json_and_resolves_figures(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    synthetic(runs).save(runs)  # figures relative to runs/
    (runs / "metrics.json").write_text(json.dumps({"loss": [1, 2]}))
    (runs / "list.json").write_text("[1, 2]")
    (runs / "broken.json").write_text("{not json")
    other = tmp_path / "other"
    other.mkdir()
    synthetic(other, "depth-30", relative=False).save(other)  # absolute figure paths
    out = tmp_path / "report"
    assert main([str(runs), str(other), "--out", str(out)]) == 0
    text = (out / REPORT_NAME).read_text()
    assert text.count("<img ") == 4 and 'class="missing"' not in text
    assert "2 of 4 claims pass" in text
    assert "2 studies" in capsys.readouterr().out
    # default --out is the first folder; a JSON file may be named directly
    assert main([str(runs / "init-depth.json")]) == 0
    assert (runs / REPORT_NAME).exists()
    assert [r.name for r in load_results([runs])] == ["init-depth"]


def test_main_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text("{}")
    assert main([str(tmp_path)]) == 2
    assert "no study results" in capsys.readouterr().err


# ---------------------------------------------------------------------- a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html_path, png_path, profile, size=(1200, 3000)):
    """Render ``html_path`` in headless Chromium with networking off; return the screenshot as an array."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png_path}",
        f"--window-size={size[0]},{size[1]}",
        html_path.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png_path.exists(), f"no screenshot; chromium said:\n{proc.stderr[-2000:]}"
    return np.asarray(Image.open(png_path).convert("RGB"))


def matplotlib_figure(path):
    """A real figure written by the studies' save_figure (RGBA PNG from matplotlib's Agg)."""
    from matplotlib.figure import Figure

    from trainlab.experiments.common import save_figure

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    x = np.linspace(0, 6, 50)
    ax.plot(x, np.sin(x), "o-", label="sin")
    ax.semilogy(x, np.exp(x), label="exp")
    ax.legend()
    return save_figure(fig, path, dpi=80)


def found_in(shot, png_path):
    """Whether the image's most detailed middle row appears, pixel for pixel, in a row of ``shot``."""
    rgba = np.asarray(Image.open(png_path).convert("RGBA")).astype(float)
    rgb = np.round(rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255)).astype(np.uint8)
    h = rgb.shape[0]
    row = max(range(h // 3, 2 * h // 3), key=lambda r: len(np.unique(rgb[r], axis=0)))
    needle = rgb[row].tobytes()
    return any((i := line.tobytes().find(needle)) >= 0 and i % 3 == 0 for line in shot)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_renders_every_figure(tmp_path):
    """Each figure is a solid block of a colour nothing else draws; the screenshot must show each whole.

    A real matplotlib figure must appear too, pixel for pixel (images narrower than the page
    are drawn unscaled).
    """
    result = synthetic(tmp_path)
    result.figures["a matplotlib figure"] = Path(matplotlib_figure(tmp_path / "plot.png")).name
    path = write_report([result], tmp_path)
    shot = screenshot(path, tmp_path / "shot.png", tmp_path / "profile")
    assert found_in(shot, tmp_path / "plot.png")
    assert shot.shape[0] >= 1000 and shot.shape[1] >= 1000
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 50  # text and tables drew, not a blank page
    area = FIG_SIZE[0] * FIG_SIZE[1]
    for color in (PNG_COLOR, GIF_COLOR):
        hits = np.all(shot == np.array(color, dtype=np.uint8), axis=-1).sum()
        assert hits >= 0.95 * area, (color, hits, area)
