"""The playground's state (URL query), its training sessions, presets and optimizer-tab paths (no server)."""

from __future__ import annotations

import base64
import math
from urllib.parse import parse_qsl

import numpy as np
import pytest

from trainlab import data, init, models, nn, optim
from trainlab.experiments import surfaces
from trainlab.playground import config
from trainlab.playground.config import ConfigError, parse_state, to_query
from trainlab.playground.presets import PRESETS
from trainlab.playground.session import MAX_COLUMNS, Session, column_stride, scaled_init
from trainlab.playground.trajectories import path, trajectories

SMALL = {"ds": "moons", "n": 200, "depth": 3, "width": 8, "batch": 16, "every": 2, "seed": 7}


def _roundtrip(state: config.State) -> config.State:
    return parse_state(dict(parse_qsl(to_query(state), keep_blank_values=True)))


# ---------------------------------------------------------------------- the state
def test_defaults_and_query_roundtrip():
    state = parse_state({})
    assert state.data["ds"] == "spiral" and state.runs[0]["init"] == "he" and not state.compare
    q = {**SMALL, "act": "tanh", "init": "small_random", "scale": "2.5", "opt": "adam", "lr": "0.003",
         "b1": "0.8", "epsin": "1", "cmp": "1", "b.bn": "1", "b.opt": "rmsprop", "b.alpha": "0.9", "tab": "opt",
         "surf": "saddle", "osteps": "50", "orules": "sgd,adam", "o.adam.b2": "0.99"}
    state = parse_state(q)
    again = _roundtrip(state)
    assert again.to_dict() == state.to_dict()
    a, b = state.runs
    assert (a["scale"], a["lr"], a["b1"], a["epsin"]) == (2.5, 0.003, 0.8, True)
    assert b["bn"] and b["opt"] == "rmsprop" and b["alpha"] == 0.9 and b["act"] == "tanh"   # B inherits A
    assert list(state.rules) == ["sgd", "adam"] and state.rules["adam"]["b2"] == 0.99
    query = to_query(state)
    assert "seed=7" in query and "b.act" not in query and "b.bn=1" in query   # B: only what differs


def test_noise_default_follows_the_dataset():
    assert parse_state({"ds": "blobs"}).data["noise"] == 1.0
    assert parse_state({"ds": "moons"}).data["noise"] == 0.1
    assert parse_state({"ds": "moons", "noise": "0.3"}).data["noise"] == 0.3


@pytest.mark.parametrize(("query", "key", "text"), [
    ({"depth": "31"}, "depth", "[1, 30]"),
    ({"depth": "2.5"}, "depth", "an integer"),
    ({"width": "wide"}, "width", "an integer"),
    ({"lr": "0"}, "lr", "(0, 10]"),
    ({"lr": "nan"}, "lr", "a number"),
    ({"b1": "1"}, "b1", "[0, 1)"),
    ({"act": "relu6"}, "act", "one of relu, leaky_relu, tanh, sigmoid"),
    ({"init": "xavir"}, "init", "did you mean 'xavier'"),
    ({"bn": "maybe"}, "bn", "0 or 1"),
    ({"detph": "3"}, "detph", "did you mean 'depth'"),
    ({"b.depth": "3"}, "b.depth", "compare mode"),
    ({"cmp": "1", "b.depth": "0"}, "b.depth", "[1, 30]"),
    ({"ds": "moons", "n": "60", "batch": "100"}, "batch", "training split"),
    ({"depth": "30", "width": "128", "batch": "256"}, "width", "limit"),
    ({"o.adam.mom": "0.9"}, "o.adam.mom", "takes lr, b1, b2, eps, epsin, bc"),
    ({"o.adam.beta": "0.9"}, "o.adam.beta", "o.RULE.KEY"),
    ({"orules": "sgd,lion"}, "orules", "'lion'"),
    ({"tab": "charts"}, "tab", "train, opt"),
])
def test_bad_values_name_the_key(query, key, text):
    with pytest.raises(ConfigError) as info:
        parse_state(query)
    assert info.value.key == key
    assert text in str(info.value)


def test_optimizer_kwargs_reach_every_rule_and_flag():
    a = parse_state({"opt": "adam", "lr": "0.01", "b1": "0.8", "b2": "0.9", "eps": "1e-6", "epsin": "1", "bc": "0"})
    kwargs = config.optimizer_kwargs(a.runs[0])
    assert kwargs == {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "eps_inside_sqrt": True, "bias_correction": False}
    for rule in config.RULES:
        run = parse_state({"opt": rule}).runs[0]
        opt = optim.create(rule, [nn.Parameter(np.zeros(3))], **config.optimizer_kwargs(run))
        assert opt.param_groups[0]["lr"] == run["lr"]
    seed = optim.create("adam_seed", [nn.Parameter(np.zeros(3))], lr=0.1).param_groups[0]
    assert seed["eps_inside_sqrt"] and not seed["bias_correction"]


# ---------------------------------------------------------------------- sessions
def _all_steps(session: Session, chunks: list[int | None]) -> dict:
    """Advance in the given chunk sizes (None: one tiny time budget) and concatenate every update."""
    out: dict = {"runs": [{"steps": [], "loss": [], "acc": [], "val": [], "hist": [], "ratio": [], "new": []}
                          for _ in session.runs]}
    for chunk in chunks:
        update = session.advance(chunk, 1e-9 if chunk is None else None, boundary=False)
        for acc, r in zip(out["runs"], update["runs"], strict=True):
            for key in ("steps", "loss", "acc", "val", "hist", "ratio"):
                acc[key] += r[key]
            acc["new"] += r["new_findings"]
    return out


def test_same_state_same_numbers_whatever_the_pace():
    state = parse_state({**SMALL, "cmp": "1", "b.init": "xavier", "b.opt": "adam", "b.lr": "0.01"})
    one, two = Session(state), Session(state)
    got_one = _all_steps(one, [40])
    got_two = _all_steps(two, [1, None, 7, None, 3, 13, None] + [1] * 40)
    two_steps = two.step
    assert two_steps >= 40
    _all_steps(one, [two_steps - 40])
    got_one_more = _all_steps(Session(state), [two_steps])
    for a, b in zip(got_one_more["runs"], got_two["runs"], strict=True):
        assert a == b                            # identical floats, histograms, ratios, findings
        assert a["steps"] == list(range(two_steps))
    assert got_one["runs"][0]["loss"] == got_two["runs"][0]["loss"][:40]
    for ra, rb in zip(one.runs, two.runs, strict=True):
        for pa, pb in zip(ra.model.parameters(), rb.model.parameters(), strict=True):
            np.testing.assert_array_equal(pa.data, pb.data)


def test_session_is_the_library_run_by_hand():
    """A session's numbers are trainlab's: the same mlp, optimizer, data and batches, stepped by hand."""
    state = parse_state({**SMALL, "opt": "momentum", "lr": "0.05", "mom": "0.8", "act": "tanh", "init": "xavier",
                         "bn": "1", "scale": "1.5"})
    session = Session(state)
    got = _all_steps(session, [25])["runs"][0]
    splits = data.load("moons", rng=np.random.default_rng([7, 0]), n_samples=200, noise=0.1)
    model = models.mlp(2, [8] * 3, 2, activation="tanh", batchnorm=True, rng=np.random.default_rng([7, 1]),
                       init=scaled_init("xavier", 1.5))
    opt = optim.Momentum(model.parameters(), lr=0.05, momentum=0.8)
    loss_fn = nn.CrossEntropyLoss()
    batches = data.Batches(*splits.train, 16, rng=np.random.default_rng([7, 2]))
    losses = []
    while len(losses) < 25:
        for xb, yb in batches:
            if len(losses) == 25:
                break
            losses.append(loss_fn(model(xb), yb))
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            opt.zero_grad()
    assert got["loss"] == losses
    for p, q in zip(model.parameters(), session.runs[0].model.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert session.batches_per_epoch == len(batches) and session.epoch == 25 // len(batches)


def test_scaled_init_multiplies_the_std():
    w = scaled_init("he", 3.0)((400, 200), rng=np.random.default_rng(0))
    np.testing.assert_allclose(w, 3.0 * init.he((400, 200), rng=np.random.default_rng(0)), rtol=1e-6)
    assert w.dtype == np.float32 and scaled_init("xavier", 1.0) == "xavier"


def test_compare_steps_in_lockstep_on_the_same_batches():
    solo = Session(parse_state(SMALL))
    pair = Session(parse_state({**SMALL, "cmp": "1", "b.init": "small_random"}))
    s, p = _all_steps(solo, [12]), _all_steps(pair, [12])
    assert p["runs"][0] == s["runs"][0]              # side A of a comparison is the solo run
    assert p["runs"][1]["steps"] == p["runs"][0]["steps"] == list(range(12))
    assert p["runs"][1]["loss"] != p["runs"][0]["loss"]


def test_sampled_records_histograms_ratios_and_val():
    session = Session(parse_state(SMALL))
    update = session.advance(5, boundary=True)
    run = update["runs"][0]
    assert [h[0] for h in run["hist"]] == [0, 2, 4] and [v[0] for v in run["val"]] == [0, 2, 4]
    step, acts, grads = run["hist"][0]
    assert len(acts) == len(grads) == 3                       # one per hidden activation layer
    lo, hi, nonfinite, std, *counts = acts[0]
    assert lo < hi and nonfinite == 0 and std > 0 and len(counts) == 32 and sum(counts) == 16 * 8
    monitor_hist = session.runs[0].monitor.histogram_history(session.runs[0].act_layers[0], "act")[0][1]
    assert counts == monitor_hist.counts.tolist()
    assert all(len(r) == 4 and all(v is None or v > 0 for v in r) for _, r in run["ratio"])   # 3 hidden + output
    zeros = Session(parse_state({**SMALL, "init": "zeros"})).advance(1)["runs"][0]["hist"][0]
    lo, hi, _, std, *counts = zeros[1][0]               # every activation is 0: a line at 0, not 0 +- 0.5
    assert lo == hi == 0.0 and std == 0.0 and sum(counts) == 16 * 8
    b = update["boundary"]["runs"][0]
    assert len(np.frombuffer(base64.b64decode(b["cls"]), np.uint8)) == 48 * 48


def test_column_stride_keeps_at_most_max_columns():
    for every in (1, 5, 7):
        for step in (0, 10, MAX_COLUMNS * every, 10**5):
            stride = column_stride(step, every)
            assert stride % every == 0 and step // stride < MAX_COLUMNS
            assert stride == every or step // (stride // 2) >= MAX_COLUMNS


def test_divergence_stops_one_side_and_names_the_layer():
    state = parse_state({**SMALL, "depth": 6, "width": 32, "lr": "5", "cmp": "1", "b.lr": "0.05"})
    session = Session(state)
    update = session.advance(60)
    a, b = update["runs"]
    assert a["diverged_at"] is not None and b["diverged_at"] is None
    assert a["loss"][-1] is None and "stops" in a["event"]
    assert any(f["kind"] == "nonfinite" for f in a["findings"])
    assert len(b["steps"]) == 60 and len(a["steps"]) == a["diverged_at"] + 1


def test_limits_end_a_session():
    session = Session(parse_state(SMALL), max_steps=10)
    update = session.advance(100)
    assert session.step == 10 and "10 steps" in update["finished"]
    assert session.advance(5)["runs"][0]["steps"] == []
    now = [0.0]
    timed = Session(parse_state(SMALL), max_seconds=1.0, clock=lambda: now[0])
    timed.advance(3)
    now[0] = 2.0
    assert "time limit" in timed.advance(3)["finished"] and timed.step == 3


# ---------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", [p for p in PRESETS if p.get("tab") != "opt"], ids=lambda p: p["id"])
def test_network_presets_show_their_claim(preset):
    """Each preset parses, and after its steps each side has the findings it promises (and not the others)."""
    state = parse_state(preset["query"])
    expect = preset["expect"]
    assert preset["claim"] and preset["title"] and preset["study"] in (
        "init-depth", "init-train", "depth-30", "batchnorm", "optimizers")
    assert _roundtrip(state).to_dict() == state.to_dict()
    update = Session(state).advance(expect["steps"], boundary=False)
    for side, run in zip("AB", update["runs"], strict=False):
        kinds = {f["kind"] for f in run["findings"]}
        wanted = expect[side]
        assert set(wanted) <= kinds, (side, kinds)
        if not wanted:
            assert not kinds & set(expect.get("absent", [])), (side, kinds)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.get("tab") == "opt"], ids=lambda p: p["id"])
def test_optimizer_presets_show_their_claim(preset):
    result = trajectories(parse_state(preset["query"]))
    paths = result["paths"]
    assert list(paths) == preset["query"]["orules"].split(",")
    expect = preset["expect"]
    if expect:
        slow = paths[expect["than"]]["reached"] or math.inf
        for rule in expect["faster"]:
            assert paths[rule]["reached"] is not None and 2 * paths[rule]["reached"] <= slow, rule


# ---------------------------------------------------------------------- the optimizer tab
def test_path_matches_the_study_trajectory_and_takes_every_hyperparameter():
    ours = path(surfaces.VALLEY, "adam", {"lr": 0.1}, 50)
    theirs = surfaces.trajectory(surfaces.VALLEY, "adam", 0.1, 50)
    np.testing.assert_array_equal(np.array(ours["points"]), theirs.points)
    plain = path(surfaces.VALLEY, "momentum", {"lr": 0.01, "momentum": 0.9}, 30)["points"]
    slower = path(surfaces.VALLEY, "momentum", {"lr": 0.01, "momentum": 0.5}, 30)["points"]
    assert plain[1] == slower[1] and plain[5] != slower[5]     # momentum acts from the second step
    by_hand = np.array(surfaces.VALLEY.start)
    velocity = np.zeros(2)
    for _ in range(30):
        velocity = 0.5 * velocity - 0.01 * surfaces.VALLEY.grad(by_hand)   # the seed: v = mu v - lr g; w += v
        by_hand = by_hand + velocity
    np.testing.assert_allclose(slower[-1], by_hand, rtol=1e-12)
    blown = path(surfaces.VALLEY, "sgd", {"lr": 0.05}, 500)       # lr > 2/100: y oscillates and grows
    assert blown["diverged"] and blown["reached"] is None and all(map(math.isfinite, blown["f"]))


def test_trajectories_message():
    state = parse_state({"surf": "rosenbrock", "osteps": "20", "orules": "adam_seed,adamw", "o.adamw.wd": "0.1"})
    msg = trajectories(state)
    assert msg["type"] == "trajectories" and msg["minimum"] == [1.0, 1.0] and msg["steps"] == 20
    assert msg["paths"]["adamw"]["hyperparameters"]["weight_decay"] == 0.1
    assert len(msg["paths"]["adam_seed"]["points"]) == 21
    assert len(base64.b64decode(msg["field"]["levels"])) == msg["field"]["n"] ** 2
