"""Check every figure a block of code saves: :func:`trainlab.plotting.figure_problems` runs on each
figure just before :func:`trainlab.plotting.save_png` writes it (the studies, sweeps and run folders
all save through it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from trainlab import plotting


@contextmanager
def checked_figures() -> Iterator[dict[str, list[str]]]:
    """Yields ``{file name: problems}``, filled in as the block saves figures."""
    found: dict[str, list[str]] = {}
    save = plotting.save_png

    def checking_save(fig, path, *args, **kwargs):
        found[Path(path).name] = plotting.figure_problems(fig)
        return save(fig, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plotting, "save_png", checking_save)
        yield found


def assert_figures_read_well(found: dict[str, list[str]], expected: set[str] | None = None) -> None:
    """No figure has a problem, and (given ``expected``) every expected file was checked."""
    if expected is not None:
        assert expected <= set(found), f"figures saved without the check: {sorted(expected - set(found))}"
    bad = {name: problems for name, problems in found.items() if problems}
    assert not bad, "figures that do not read at a glance:\n" + "\n".join(
        f"{name}: {p}" for name, problems in bad.items() for p in problems)
