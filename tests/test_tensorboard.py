"""The TensorBoard callback: what it writes, read back with TensorBoard's own event reader."""

import json

import numpy as np
import pytest

from trainlab import Monitor, Trainer, models, nn, optim
from trainlab.cli import main
from trainlab.config import validate
from trainlab.run import resume, run
from trainlab.tensorboard import METRICS, TensorBoard, flatten_hparams

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402


def _data(rng, n=192, features=12, classes=4):
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x[:, :classes].argmax(axis=1)).astype(np.int64)
    return x, y


def _reader(run_dir):
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={
        event_accumulator.HISTOGRAMS: 0, event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
    acc.Reload()
    return acc


def _hparams_events(run_dir):
    """``{tag: [HParamsPluginData, ...]}`` for the hparams plugin's summaries in every event file."""
    found = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    found.setdefault(value.tag, []).append(data)
    return found


def _train(tmp_path, *, background, histograms=True, epochs=2, every=4, hparams=None):
    rng = np.random.default_rng(0)
    x, y = _data(rng)
    model = models.mlp(12, [16, 16], 4, activation="relu", batchnorm=True, rng=np.random.default_rng(1))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    monitor = Monitor(model, every=every, histograms=histograms, bins=12)
    board = TensorBoard(tmp_path, "run-a", hparams=hparams, background=background)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), monitor=monitor, callbacks=[board], log=None,
                      progress=False)
    history = trainer.fit((x, y), (x[:64], y[:64]), epochs=epochs, batch_size=32, rng=rng)
    return monitor, history, board


@pytest.mark.parametrize("background", [True, False])
def test_histograms_scalars_and_text_read_back_exactly(tmp_path, background):
    config = {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "model": {"hidden": [16, 16]},
              "train": {"batchnorm": True}}
    monitor, history, board = _train(tmp_path, background=background, hparams=config)
    assert board.writer is None, "training's end closes the writer"
    acc = _reader(tmp_path / "run-a")
    tags = acc.Tags()
    labels = {"0": "0.Linear", "1": "1.BatchNorm1d", "2": "2.ReLU", "3": "3.Linear", "4": "4.BatchNorm1d",
              "5": "5.ReLU", "6": "6.Linear"}
    assert monitor.layer_names == list(labels)
    group = {"act": "activation", "grad": "gradient", "weight": "weight", "bias": "bias"}
    expected = {}
    for record in monitor.steps:
        for layer, hists in record.histograms.items():
            for what, h in hists.items():
                expected.setdefault(f"{group[what]}/{labels[layer]}", []).append((record.step, h))
    assert [r.step for r in monitor.steps] == [0, 4, 8] and set(tags["histograms"]) == set(expected)
    assert "activation/2.ReLU" in expected and "bias/6.Linear" in expected and "weight/1.BatchNorm1d" in expected
    for tag, want in expected.items():
        got = acc.Histograms(tag)
        assert [e.step for e in got] == [s for s, _ in want], tag
        for event, (_, h) in zip(got, want, strict=True):
            hv = event.histogram_value
            assert list(hv.bucket) == h.counts.tolist(), tag          # the Monitor's buckets, not re-binned
            assert list(hv.bucket_limit) == h.edges[1:].tolist(), tag
            assert (hv.min, hv.max, hv.num, hv.sum, hv.sum_squares) == (h.min, h.max, h.num, h.sum,
                                                                        h.sum_squares)
            assert sum(hv.bucket) == h.num
    # update ratios at every sampled step, as float32 (TensorBoard's scalar type)
    for record in monitor.steps:
        for layer, stats in record.layers.items():
            for stat, value in stats.items():
                if stat.endswith(".update_ratio"):
                    tag = f"update_ratio/{labels[layer]}.{stat.split('.')[0]}"
                    by_step = {e.step: e.value for e in acc.Scalars(tag)}
                    assert by_step[record.step] == np.float32(value), tag
    # epoch scalars at each epoch's last step, equal to the history
    steps_per_epoch = 192 // 32
    last_steps = [steps_per_epoch * (e + 1) - 1 for e in range(2)]
    for key, tag in {**METRICS, "lr": "lr"}.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == last_steps, tag
        assert [e.value for e in events] == [np.float32(v) for v in getattr(history, key)], tag
    batch = acc.Scalars("loss/batch")
    assert [e.step for e in batch] == [r.step for r in monitor.steps]
    # the diagnosis, one text per epoch
    texts = acc.Tensors("diagnosis/text_summary")
    assert [t.step for t in texts] == last_steps
    assert texts[-1].tensor_proto.string_val[0].decode().startswith("epoch 2: ")
    # hparams: the flattened config at the start, a successful end
    hp = _hparams_events(tmp_path / "run-a")
    start = hp["_hparams_/session_start_info"][0].session_start_info
    assert {k: v.WhichOneof("kind") for k, v in start.hparams.items()} == {
        "optimizer.name": "string_value", "optimizer.lr": "number_value", "optimizer.momentum": "number_value",
        "model.hidden": "string_value", "train.batchnorm": "bool_value"}
    assert start.hparams["optimizer.lr"].number_value == 0.1
    assert start.hparams["model.hidden"].string_value == "[16, 16]"
    experiment = hp["_hparams_/experiment"][0].experiment
    assert sorted(m.name.tag for m in experiment.metric_infos) == sorted(METRICS.values())
    assert [e.session_end_info.status for e in hp["_hparams_/session_end_info"]] == [1]   # STATUS_SUCCESS


def test_monitor_without_histograms_still_gives_update_ratios(tmp_path):
    monitor, _, _ = _train(tmp_path, background=True, histograms=False, epochs=1)
    tags = _reader(tmp_path / "run-a").Tags()
    assert tags["histograms"] == []
    assert "update_ratio/0.Linear.weight" in tags["scalars"] and "loss/val" in tags["scalars"]
    assert "_hparams_/session_start_info" not in _hparams_events(tmp_path / "run-a")


def test_a_monitor_that_drops_old_records_is_still_written_in_full(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _data(rng)
    model = models.mlp(12, [8], 4, rng=np.random.default_rng(1))
    monitor = Monitor(model, every=2, histograms=True, max_records=1)
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), monitor=monitor,
            callbacks=[TensorBoard(tmp_path)], log=None, progress=False).fit((x, y), None, epochs=1, batch_size=32,
                                                                             rng=rng)
    assert len(monitor.steps) == 1
    assert [e.step for e in _reader(tmp_path).Histograms("activation/0.Linear")] == [0, 2, 4]


def test_diagnosis_text_carries_the_findings(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _data(rng)
    model = models.mlp(12, [32] * 8, 4, activation="tanh", batchnorm=False, init="small_random",
                       rng=np.random.default_rng(1))
    monitor = Monitor(model, every=3)
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss(), monitor=monitor,
                      callbacks=[TensorBoard(tmp_path)], log=None, progress=False)
    trainer.fit((x, y), None, epochs=1, batch_size=64, rng=rng)
    text = _reader(tmp_path).Tensors("diagnosis/text_summary")[0].tensor_proto.string_val[0].decode()
    findings = monitor.diagnose()
    assert findings and findings[0].kind == "vanishing_activations"
    for f in findings:
        assert f"**{f.kind}**" in text and f.message in text


def test_sweep_trials_share_one_log_dir_and_compare_in_hparams(tmp_path):
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    rng = np.random.default_rng(0)
    x, y = _data(rng)
    for name, lr in (("trial-1", 0.01), ("trial-2", 0.1)):
        model = models.mlp(12, [8], 4, rng=np.random.default_rng(1))
        board = TensorBoard(tmp_path / "tb", name, hparams={"optimizer": {"lr": lr}})
        Trainer(model, optim.SGD(model.parameters(), lr=lr), nn.CrossEntropyLoss(), callbacks=[board], log=None,
                progress=False).fit((x, y), (x, y), epochs=1, batch_size=64, rng=np.random.default_rng(2))
        assert board.run_dir == tmp_path / "tb" / name
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "tb"))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == ["trial-1", "trial-2"]
    lrs = [_hparams_events(tmp_path / "tb" / n)["_hparams_/session_start_info"][0].session_start_info
           .hparams["optimizer.lr"].number_value for n in ("trial-1", "trial-2")]
    assert lrs == [0.01, 0.1]


SWEEP = """
[sweep]
name = "tb"
[model]
hidden = [8]
[optimizer]
name = "sgd"
[train]
epochs = 1
batch_size = 128
monitor_every = 5
{tensorboard}
[grid]
"optimizer.lr" = [0.05, 0.5]
"""


def test_sweep_logs_every_trial_under_one_log_dir(tmp_path, capsys):
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    from trainlab.trials import sweep as sw

    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(tensorboard="tensorboard = true"))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    assert f"tensorboard --logdir {out / 'tb'}" in capsys.readouterr().out
    sweep = sw.load_sweep(path)
    ids = [t.id for t in sweep.trials]
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(out / "tb"))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == sorted(ids)
    for trial in sweep.trials:
        run_dir = out / "tb" / trial.id
        hp = _hparams_events(run_dir)["_hparams_/session_start_info"][0].session_start_info.hparams
        assert hp["optimizer.lr"].number_value == trial.assignment["optimizer.lr"]
        acc = _reader(run_dir)
        assert "activation/0.Linear" in acc.Tags()["histograms"]
        curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [e.value for e in acc.Scalars("loss/val")] == [np.float32(r["val_loss"]) for r in curve]
    path.write_text(SWEEP.format(tensorboard=""))              # logging is not part of a trial's identity
    assert [t.id for t in sw.load_sweep(path).trials] == ids
    path.write_text(SWEEP.format(tensorboard="") + '"train.tensorboard" = [false, true]\n')
    with pytest.raises(sw.SweepError, match="not a search dimension"):
        sw.load_sweep(path)


def _small_config(tmp_path, **train):
    return validate({"run": {"name": "r", "seed": 3, "out": str(tmp_path)}, "data": {"name": "digits"},
                     "model": {"hidden": [16]}, "optimizer": {"name": "sgd", "lr": 0.05},
                     "train": {"epochs": 2, "batch_size": 128, "monitor_every": 5, "tensorboard": True, **train}})


def test_run_folder_tb_and_resume_continues_without_a_fold(tmp_path):
    # checkpoint every 2 epochs: epoch 3's events are past the checkpoint the resume starts from
    folder, _ = run(_small_config(tmp_path, epochs=3, checkpoint_every=2), quiet=True)
    before = _reader(folder / "tb")
    assert "activation/0.Linear" in before.Tags()["histograms"]
    ends = [e.step for e in before.Scalars("loss/train")]
    assert len(ends) == 3
    hp = _hparams_events(folder / "tb")["_hparams_/session_start_info"][0].session_start_info.hparams
    assert hp["train.tensorboard"].bool_value is True and hp["optimizer.lr"].number_value == 0.05
    per_epoch = ends[0] + 1
    assert ends == [per_epoch - 1, 2 * per_epoch - 1, 3 * per_epoch - 1]
    resume(folder, epochs=3, quiet=True)
    after = _reader(folder / "tb")
    assert len(list((folder / "tb").glob("events.out.tfevents.*"))) == 2
    assert [e.step for e in after.Scalars("loss/train")] == ends        # epoch 3 once: the old one purged
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in after.Scalars("loss/train")] == [np.float32(r["train_loss"]) for r in rows]
    hist_steps = [e.step for e in after.Histograms("activation/0.Linear")]
    assert hist_steps == sorted(set(hist_steps)) and hist_steps[0] == 0 and hist_steps[-1] <= ends[-1]


def test_a_second_writer_in_the_same_second_keeps_the_first_file(tmp_path):
    for step in (0, 1):
        board = TensorBoard(tmp_path, background=False).open(purge_step=step or None)
        board.add_scalar("x", float(step), step)
        board.close()
    files = sorted(tmp_path.glob("events.out.tfevents.*"))
    assert len(files) == 2
    assert [e.step for e in _reader(tmp_path).Scalars("x")] == [0, 1]


def test_cli_flag_and_config_key(tmp_path, capsys):
    assert main(["train", "--tensorboard", "--set", f'run.out="{tmp_path}"', "--set", 'run.name="c"',
                 "--set", "train.epochs=1", "--set", "model.hidden=[8]", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {tmp_path / 'c' / 'tb'}" in out
    assert "tensorboard = true" in (tmp_path / "c" / "config.toml").read_text()
    assert list((tmp_path / "c" / "tb").glob("events.out.tfevents.*"))
    assert main(["train", "--resume", str(tmp_path / "c"), "--tensorboard"]) == 2
    assert "--tensorboard" in capsys.readouterr().err


def test_bad_arguments_and_a_failing_write_are_reported(tmp_path):
    for bad in ("", "..", "/abs"):
        with pytest.raises(ValueError, match="run_name"):
            TensorBoard(tmp_path, bad)
    with pytest.raises(ValueError, match="flush_secs"):
        TensorBoard(tmp_path, flush_secs=0)
    with pytest.raises(TypeError, match="hparams must be a dict"):
        flatten_hparams([1, 2])
    assert flatten_hparams({"a": {"b": None, "c": (1, 2), "d": {"e": "x"}}}) == {"a.c": "[1, 2]", "a.d.e": "x"}
    def broken(*args):
        raise OSError("disk full")

    board = TensorBoard(tmp_path, "x", background=True).open()
    board._submit(broken)                  # fails in the background thread: reported by the next call
    with pytest.raises(RuntimeError, match="disk full"):
        board.close()
    assert board.writer is None
    board = TensorBoard(tmp_path, "y").open()
    with pytest.raises(RuntimeError, match="disk full"):
        board._submit(broken)              # in the training thread: at once
    board.close()
    assert board.writer is None


@pytest.mark.parametrize("background", [True, False])
def test_events_reach_the_file_within_flush_secs_without_a_flush(tmp_path, background):
    import time

    board = TensorBoard(tmp_path, flush_secs=0.2, background=background).open()
    try:
        board.add_scalar("custom/x", 1.5, 3)
        if not background:        # written in this thread: the flush is due at the next write
            time.sleep(0.25)
            board.add_scalar("custom/x", 2.5, 4)
        deadline, steps = time.monotonic() + 5.0, []
        while time.monotonic() < deadline and not steps:
            time.sleep(0.05)
            steps = [e.step for e in _reader(tmp_path).Scalars("custom/x")] if _reader(tmp_path).Tags()[
                "scalars"] else []
        assert steps and steps[0] == 3, "an event waited more than flush_secs for the file"
    finally:
        board.close()
    assert [e.value for e in _reader(tmp_path).Scalars("custom/x")] == ([1.5] if background else [1.5, 2.5])
    with pytest.raises(RuntimeError, match="not open"):
        board.add_scalar("custom/x", 1.0, 5)
    with TensorBoard(tmp_path / "b").open() as other, pytest.raises(ValueError, match="tag"):
        other.add_scalar("", 1.0, 0)


def test_interpreter_exit_writes_what_was_queued(tmp_path):
    """A script that never closes its callback still leaves every event it logged on disk."""
    import subprocess
    import sys

    code = ("import sys, types\nfrom trainlab.tensorboard import TensorBoard\n"
            "board = TensorBoard(sys.argv[1], hparams={'lr': 0.1}, flush_secs=600)\n"
            "board.on_train_begin(types.SimpleNamespace(global_step=0, monitor=None))\n"
            "for step in range(200):\n    board.add_scalar('custom/x', float(step), step)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [e.step for e in _reader(tmp_path).Scalars("custom/x")] == list(range(200))
    ends = _hparams_events(tmp_path).get("_hparams_/session_end_info", [])
    assert len(ends) == 1 and ends[0].session_end_info.status == 2      # STATUS_FAILURE: not closed by training
