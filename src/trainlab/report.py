"""A self-contained HTML report of study results: ``report.html``.

:func:`write_report` turns :class:`~trainlab.experiments.common.StudyResult` s into one
HTML file that opens in a browser with no network: figures are embedded as base64
``data:`` URIs (PNG, GIF, JPEG, WebP, SVG), the CSS is inline, and there is no script,
web font or external URL. It holds

* a header (trainlab version, date, how many claims pass),
* a table of every claim: study, claim, measured number, threshold, PASS/FAIL,
* one section per study: summary, its claims, figures with captions, tables, the exact
  command that reproduces it and its wall time.

Every piece of text is escaped with :func:`html.escape`. Figure paths that are relative
are looked up in the report's folder (then the working directory); :func:`main` (the
``trainlab report DIR... [--out DIR]`` command) first makes them relative to the folder of
the JSON they came from. A figure that cannot be read is shown as a visible "missing"
note, never as a broken link.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainlab.checkpoint import atomic_write_bytes
from trainlab.experiments.common import StudyResult, Table, Verdict

__all__ = ["write_report", "render_html", "load_results", "main", "REPORT_NAME", "page", "figure_html",
           "table_html", "escape", "meta_line"]

REPORT_NAME = "report.html"

_MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}

_CSS = """
:root { --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #b42318; --fail-bg: #fde2e1; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
       color: #1f2328; background: #ffffff; margin: 0 auto; max-width: 1280px; padding: 24px 32px 64px;
       line-height: 1.45; }
h1 { font-size: 1.9em; margin: 0 0 4px; }
h2 { font-size: 1.45em; margin-top: 48px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.1em; margin-top: 24px; }
.meta { color: #57606a; margin: 0 0 16px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600; }
.pass { color: var(--pass); background: var(--pass-bg); }
.quick { color: #7d4e00; background: #fff1c2; }
.fail { color: var(--fail); background: var(--fail-bg); }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.92em; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.verdict { font-weight: 700; text-align: center; white-space: nowrap; }
td.study { white-space: nowrap; }
td.detail { color: #57606a; font-size: 0.9em; max-width: 420px; }
.scroll { overflow-x: auto; }
figure { margin: 16px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); display: block; }
figcaption { color: #57606a; font-size: 0.92em; margin-top: 4px; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 8px 12px; overflow-x: auto; }
code { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }
.missing { color: var(--fail); background: var(--fail-bg); padding: 8px 12px; }
nav ul { margin: 4px 0; }
footer { margin-top: 48px; color: #57606a; font-size: 0.85em; }
"""


# ---------------------------------------------------------------------- small helpers
def escape(value: Any) -> str:
    """``str(value)`` escaped for HTML text and attributes."""
    return html.escape(str(value), quote=True)


_e = escape


def _fmt_number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _anchor(index: int, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return f"study-{index}-{safe}"


def _sniff_mime(data: bytes, suffix: str) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return _MIME_BY_SUFFIX.get(suffix.lower())


def _resolve(path: str | Path, bases: Sequence[Path]) -> Path | None:
    p = Path(path)
    candidates = [p] if p.is_absolute() else [base / p for base in bases] + [p]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _data_uri(path: str | Path, bases: Sequence[Path]) -> tuple[str | None, str]:
    """``(data URI, "")`` for a readable image, else ``(None, reason)``."""
    found = _resolve(path, bases)
    if found is None:
        return None, f"not found: {path}"
    try:
        data = found.read_bytes()
    except OSError as exc:
        return None, f"unreadable: {path} ({exc.strerror})"
    mime = _sniff_mime(data, found.suffix)
    if mime is None:
        return None, f"not an image this report can embed (PNG, GIF, JPEG, WebP, SVG): {path}"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", ""


def _verdict_cells(study: str | None, v: Verdict, anchor: str | None = None) -> str:
    cls = "pass" if v.passed else "fail"
    cells = []
    if study is not None:
        name = _e(study)
        cells.append(
            f'<td class="study"><a href="#{anchor}">{name}</a></td>'
            if anchor
            else f'<td class="study">{name}</td>'
        )
    measured = v.measured
    cells += [
        f"<td>{_e(v.claim)}</td>",
        f'<td class="num">{_e(_fmt_number(measured))}</td>',
        f"<td>{_e(v.threshold)}</td>",
        f'<td class="verdict {cls}">{"PASS" if v.passed else "FAIL"}</td>',
        f'<td class="detail">{_e(v.detail)}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _verdict_table(rows: list[tuple[str | None, Verdict, str | None]], with_study: bool) -> str:
    head = (["study"] if with_study else []) + ["claim", "measured", "threshold", "verdict", "detail"]
    body = "\n".join(_verdict_cells(study if with_study else None, v, anchor) for study, v, anchor in rows)
    return (
        '<div class="scroll"><table class="claims"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + f"</tr></thead><tbody>\n{body}\n</tbody></table></div>"
    )


def table_html(table: Table) -> str:
    """A :class:`Table` as a titled, scrollable HTML table (numbers right-aligned)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in table.header)
    rows = []
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{_e(_fmt_number(c))}</td>' if _is_number(c) else f"<td>{_e(c)}</td>"
            for c in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f'<h3>{_e(table.title)}</h3>\n<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


# ---------------------------------------------------------------------- rendering
def _order(results: Sequence[StudyResult]) -> list[StudyResult]:
    """Results in the registry's order of studies (unknown names last), stable otherwise."""
    from trainlab.experiments import STUDIES

    rank = {name: i for i, name in enumerate(STUDIES)}
    return sorted(results, key=lambda r: rank.get(r.name, len(rank)))


def render_html(
    results: Sequence[StudyResult], *, bases: Sequence[str | Path] = (), generated: datetime | None = None
) -> tuple[str, list[str]]:
    """The report's HTML and the list of figures that could not be embedded.

    Args:
        results: the studies, in any order (shown in the registry's order).
        bases: folders in which relative figure paths are looked up, in order.
        generated: the date written in the header (default: now, UTC).
    """
    base_paths = [Path(b) for b in bases]
    ordered = _order(results)
    anchors = [_anchor(i, r.name) for i, r in enumerate(ordered)]
    verdict_rows = [(r.name, v, a) for r, a in zip(ordered, anchors, strict=True) for v in r.verdicts]
    n_pass = sum(v.passed for _, v, _ in verdict_rows)
    n_total = len(verdict_rows)
    all_pass = n_pass == n_total
    missing: list[str] = []

    parts = [
        "<header>",
        "<h1>trainlab report</h1>",
        meta_line(generated),
        f'<p><span class="badge {"pass" if all_pass else "fail"}">{n_pass} of {n_total} claims pass</span> '
        f"in {len(ordered)} stud{'y' if len(ordered) == 1 else 'ies'}.</p>",
        "</header>",
    ]
    if ordered:
        parts.append(
            "<nav><ul>"
            + "".join(
                f'<li><a href="#{a}">{_e(r.title)}</a> <code>{_e(r.name)}</code> '
                f'<span class="badge {"pass" if r.passed else "fail"}">'
                f"{sum(v.passed for v in r.verdicts)}/{len(r.verdicts)}</span>{_quick_badge(r)}</li>"
                for r, a in zip(ordered, anchors, strict=True)
            )
            + "</ul></nav>"
        )
    parts += [
        "<h2>Claims</h2>",
        _verdict_table(verdict_rows, with_study=True) if verdict_rows else "<p>No claims.</p>",
    ]

    for r, anchor in zip(ordered, anchors, strict=True):
        parts += [
            f'<section id="{anchor}">',
            f"<h2>{_e(r.title)} <code>{_e(r.name)}</code>{_quick_badge(r)}</h2>",
            _quick_note(r),
            f"<p>{_e(r.summary)}</p>",
            f'<p class="meta">wall time {r.seconds:.1f} s</p>' if r.seconds else "",
        ]
        parts.append("<h3>Reproduce</h3>")
        parts.append(f"<pre><code>{_e(r.command)}</code></pre>")
        if r.verdicts:
            parts += [
                "<h3>Claims</h3>",
                _verdict_table([(None, v, None) for v in r.verdicts], with_study=False),
            ]
        for caption, path in r.figures.items():
            parts.append(figure_html(caption, path, base_paths, missing, owner=r.name))
        for table in r.tables:
            parts.append(table_html(table))
        parts.append("</section>")

    parts.append(
        "<footer>Self-contained: the figures are embedded and nothing is loaded from a network. "
        "The raw numbers are in each study's JSON file next to this report.</footer>"
    )
    return page("trainlab report", parts), missing


def meta_line(generated: datetime | None = None) -> str:
    """trainlab version, date (UTC), Python and platform, as the report's header shows them."""
    from trainlab import __version__

    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<p class="meta">trainlab {_e(__version__)} &middot; generated {_e(when)} &middot; '
            f"Python {_e(platform.python_version())} &middot; {_e(platform.platform(terse=True))}</p>")


def page(title: str, body: Sequence[str]) -> str:
    """A complete, self-contained HTML document: the report's inline CSS, then ``body`` (HTML parts)."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
    ]
    return "\n".join(p for p in [*head, *body, "</body></html>"] if p) + "\n"


def figure_html(caption: str, path: str | Path, bases: Sequence[Path], missing: list[str], owner: str = "") -> str:
    """An embedded figure with its caption, or a visible "missing" note (appended to ``missing``)."""
    uri, reason = _data_uri(path, bases)
    if uri is None:
        missing.append(f"{owner}: {reason}" if owner else reason)
        return (f'<figure><p class="missing">Figure missing ({_e(reason)})</p>'
                f"<figcaption>{_e(caption)}</figcaption></figure>")
    return f'<figure><img src="{uri}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'



def _is_quick(r: StudyResult) -> bool:
    return bool(r.numbers.get("quick"))


def _quick_badge(r: StudyResult) -> str:
    return ' <span class="badge quick">quick size</span>' if _is_quick(r) else ""


def _quick_note(r: StudyResult) -> str:
    if not _is_quick(r):
        return ""
    return ('<p class="meta quick-note">This result is of the <strong>quick</strong> size (<code>--quick</code>: '
            "fewer seeds, epochs and grid points, as in CI); run the command below without "
            "<code>--quick</code> for the full study.</p>")


def write_report(results: Sequence[StudyResult], out: str | Path) -> Path:
    """Write ``<out>/report.html`` atomically and return its path.

    Relative figure paths are looked up in ``out``, then in the working directory.
    """
    out = Path(out)
    text, _ = render_html(results, bases=[out])
    path = out / REPORT_NAME
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


# ---------------------------------------------------------------------- the command
def load_results(folders: Sequence[str | Path]) -> list[StudyResult]:
    """Every study result (``*.json`` readable as a :class:`StudyResult`) in ``folders``.

    A folder may also be a single JSON file. Other JSON files are ignored. Relative figure
    paths are made absolute against the folder of their JSON.
    """
    results = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files = [folder]
        elif folder.is_dir():
            files = sorted(folder.glob("*.json"))
        else:
            raise FileNotFoundError(f"trainlab report: no such folder: {folder}")
        for path in files:
            try:
                result = StudyResult.load(path)
            except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
                continue  # not a study result (e.g. a metrics file)
            if not isinstance(result.name, str) or not isinstance(result.figures, dict):
                continue
            base = path.parent.resolve()
            result.figures = {
                str(caption): str(p if Path(p).is_absolute() else base / p)
                for caption, p in result.figures.items()
            }
            results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``trainlab report DIR... [--out DIR]``: one report from every study JSON in the folders."""
    parser = argparse.ArgumentParser(
        prog="trainlab report", description="Write a self-contained report.html from study results."
    )
    parser.add_argument(
        "dirs", nargs="+", help="folders holding <study>.json files (from trainlab experiment)"
    )
    parser.add_argument("--out", help="folder for report.html (default: the first folder)")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        results = load_results(args.dirs)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not results:
        print(f"trainlab report: no study results (*.json) in {', '.join(args.dirs)}", file=sys.stderr)
        return 2
    first = Path(args.dirs[0])
    out = Path(args.out) if args.out else (first.parent if first.is_file() else first)
    text, missing = render_html(results, bases=[out])
    path = out / REPORT_NAME
    atomic_write_bytes(path, text.encode("utf-8"))
    for m in missing:
        print(f"warning: figure {m}", file=sys.stderr)
    n_pass = sum(v.passed for r in results for v in r.verdicts)
    n_total = sum(len(r.verdicts) for r in results)
    print(f"{path}: {len(results)} studies, {n_pass}/{n_total} claims pass")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
