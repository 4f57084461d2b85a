"""The initialization studies (init-depth, init-train, depth-30): their --quick runs' claims hold."""

import json
import math

import numpy as np
import pytest

from figure_check import assert_figures_read_well, checked_figures
from trainlab import experiments
from trainlab.experiments import init_depth, init_train
from trainlab.experiments.common import StudyResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_outputs(result, out, name):
    assert result.name == name
    assert result.verdicts, "a study must judge at least one claim"
    failed = [str(v) for v in result.verdicts if not v.passed]
    assert not failed, "claims failed:\n" + "\n".join(failed)
    for v in result.verdicts:
        assert v.threshold and v.claim
        assert isinstance(v.measured, str) or math.isfinite(v.measured), v
    assert result.figures
    for path in result.figures.values():
        data = (out / path).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert result.tables and all(len(row) == len(t.header) for t in result.tables for row in t.rows)
    assert result.command.startswith(f"trainlab experiment {name} --quick --out ")
    assert result.seconds > 0
    saved = StudyResult.load(out / f"{name}.json")
    assert [v.passed for v in saved.verdicts] == [True] * len(result.verdicts)
    assert saved.figures == result.figures
    json.dumps(saved.numbers)
    report = (out / "report.html").read_text()
    assert report.count('<img src="data:image/png;base64,') == len(result.figures)
    assert ">FAIL<" not in report


@pytest.mark.parametrize("name", ["init-depth", "init-train", "depth-30"])
def test_quick_study_claims_hold(name, tmp_path):
    with checked_figures() as figures:
        result = experiments.run(name, quick=True, out=tmp_path)
    check_outputs(result, tmp_path, name)
    assert_figures_read_well(figures, set(result.figures.values()))


def test_layer_statistics_follow_the_variance_recursion():
    """Small nets: he keeps ReLU's scale, xavier loses 1/sqrt(2) a layer; the upstream gradient is N(0, 1)."""
    kwargs = dict(depth=4, width=400, n=400)
    he = init_depth.layer_statistics("he", "relu", rng=np.random.default_rng(0), **kwargs)
    xavier = init_depth.layer_statistics("xavier", "relu", rng=np.random.default_rng(0), **kwargs)
    assert he.forward_std.shape == he.backward_std.shape == (4,)
    assert abs(he.backward_std[-1] - 1) < 0.02  # the N(0, 1) pushed in at the top
    assert np.all(np.abs(he.forward_std / he.forward_std[0] - 1) < 0.15)
    ratios = xavier.forward_std[1:] / xavier.forward_std[:-1]
    assert np.all(np.abs(ratios - 1 / math.sqrt(2)) < 0.06), ratios
    assert np.all(np.abs(he.zeros - 0.5) < 0.05)
    # the same generator state gives the same statistics
    again = init_depth.layer_statistics("he", "relu", rng=np.random.default_rng(0), **kwargs)
    np.testing.assert_array_equal(he.forward_std, again.forward_std)


def test_least_slack_picks_the_value_nearest_a_bound():
    assert init_depth._least_slack([0.2, 0.29, 0.25], 0.18, 0.30) == 0.29
    assert init_depth._least_slack([0.2, 0.5], 0.18, 0.30) == 0.5  # outside wins
    assert init_depth._least_slack([0.2, float("nan")], 0.18, 0.30) != 0.2


def test_command_reproduces_the_seeds(tmp_path):
    default = init_train.study_command("init-train", False, tmp_path, (0, 1, 2), (0, 1, 2))
    assert default == f"trainlab experiment init-train --out {tmp_path}"
    quick = init_train.study_command("init-train", True, tmp_path, (0,), (0, 1, 2))
    assert quick == f"trainlab experiment init-train --quick --out {tmp_path}"
    custom = init_train.study_command("init-train", True, tmp_path, (7,), (0, 1, 2))
    assert custom == (
        'python -c \'from trainlab import experiments; experiments.run("init-train", quick=True, '
        f'out="{tmp_path}", seeds=(7,))\''
    )


def test_empty_seeds_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        init_depth.run(quick=True, out=tmp_path, seeds=())
