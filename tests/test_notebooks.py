"""Every tutorial in docs/tutorials runs top to bottom (jupytext -> nbclient, a real kernel).

``TRAINLAB_TUTORIAL_QUICK=1`` shrinks the epochs; the code is the same. A failing cell
fails the test with the cell's source and traceback. The notebooks are also checked for
what a student needs: figures among the outputs and an "Exercises" section at the end.
"""

import os
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("[0-9][0-9]_*.py"))
CELL_TIMEOUT = 300   #: seconds; a cell that runs longer fails


def test_there_are_three_tutorials():
    assert [p.stem for p in TUTORIALS] == ["01_initialization", "02_batchnorm", "03_update_rules"]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_executes(path, tmp_path, monkeypatch):
    notebook = jupytext.read(path)
    assert not any(cell.get("outputs") for cell in notebook.cells), "no outputs are kept in git"
    markdown = [c.source for c in notebook.cells if c.cell_type == "markdown"]
    assert markdown[-1].startswith("## Exercises"), "each tutorial ends with exercises"
    monkeypatch.setenv("TRAINLAB_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    start = time.perf_counter()
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute(env=dict(os.environ))
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell failed:\n{exc}")
    seconds = time.perf_counter() - start
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 2, f"{path.name}: {len(figures)} figures shown"
    print(f"{path.name}: executed in {seconds:.1f} s")
