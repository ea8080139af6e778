"""Reliability (issue 16 items 4-7, the core parts): bad input is refused before a run starts, naming the key
or the path, and the store is unchanged; write failures stop the run as failed; odd rows never hide a run."""
from __future__ import annotations

import errno
import json
import re
import logging
import shutil
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tracer_core.cli import main as cli_main
from tracer_core.store import schema
from tracer_core.store.ingest import parse_lines
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import RunWriter, create_run_folder
from tracer_core.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
FAST = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]', "data.batch_size=8",
        "data.max_eval_samples=16", "train.threads=1", "train.similarity_probe=0", "train.steps=3",
        "train.eval_at_start=false"]


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """TRACER_DATA_DIR with one finished run in it; ``snapshot()`` lists every file with its size."""
    d = tmp_path / "store"
    monkeypatch.setenv("TRACER_DATA_DIR", str(d))
    with RunWriter.create(RunConfig(name="keep", method="ft"), d) as w:
        w.on_step(0, {("loss", "total"): 1.0})
    snap = lambda: sorted((str(p.relative_to(d)), p.stat().st_size) for p in d.rglob("*") if p.is_file()
                          and p.name != schema.STATUS_FILE) + [len(list((d / "runs").iterdir()))]
    return SimpleNamespace(path=d, snapshot=snap, run_id=w.run_id)


def _train(args, capsys):
    rc = cli_main(["train", "--quiet", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- item 4 (config): refused before the run starts, naming the key ---------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("loss.lambda_sd=Infinity", "loss.lambda_sd must be a finite number, got inf"),
    ("loss.alpha_fd=NaN", "loss.alpha_fd must be a finite number, got nan"),
    ("teacher.beta=Infinity", "teacher.beta must be a finite number"),
    ("optim.lr=Infinity", "optim.lr must be a finite number"),
    ("optim.grad_norm_multiplier=-5", "optim.grad_norm_multiplier must be > 0"),
    ("data.seed=-1", "data.seed must be in [0, 2**32-1], got -1"),
    ("train.seed=4294967296", "train.seed must be in [0, 2**32-1], got 4294967296"),
])
def test_bad_numbers_are_refused_naming_the_key(store_dir, capsys, override, message):
    before = store_dir.snapshot()
    rc, out, err = _train(["--preset", "tracer", "--set", override], capsys)
    assert rc == 2 and message in err and "done" not in out
    assert store_dir.snapshot() == before


# -- item 5: messages instead of tracebacks -------------------------------------------------------------------

def test_bad_paths_and_threads_are_messages_not_tracebacks(store_dir, tmp_path, capsys):
    before = store_dir.snapshot()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(["--config", str(tmp_path)], "is a folder; give a RunConfig JSON file"),
             (["--config", str(a_file)], "not a JSON file"),
             (["--preset", "ft", "--out", str(a_file)], f"{a_file} is a file, not a folder"),
             (["--preset", "ft", "--out", str(a_file / "sub")], f"{a_file} is a file, not a folder"),
             (["--preset", "ft", "--set", "train.threads=100000"], "train.threads=100000 is more than this machine")]
    for args, message in cases:
        rc, _, err = _train(args, capsys)
        assert rc == 2 and message in err, (args, err)
        assert "Traceback" not in err and "pretrained weights" not in err
    assert store_dir.snapshot() == before


# -- item 6: memory ------------------------------------------------------------------------------------------

def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(store_dir, capsys, monkeypatch):
    from tracer_core.training import setup
    built = []
    monkeypatch.setattr(setup, "build_model", lambda *a, **k: built.append(1))   # must never be reached
    before = store_dir.snapshot()
    rc, _, err = _train(["--preset", "ft", "--set", "model.name=ViT-B-16", "--set", "data.batch_size=8192",
                         "--set", "train.device=cpu", "--set", "model.pretrained=none"], capsys)
    assert rc == 2 and "not enough memory for this run: ViT-B-16 with data.batch_size=8192" in err
    assert "Lower data.batch_size" in err and not built
    assert store_dir.snapshot() == before


def test_memory_estimate_counts_weights_optimizer_teacher_and_activations():
    from tracer_core.config import load_preset
    from tracer_core.models import build_model
    from tracer_core.training.preflight import estimate_memory
    cfg = load_preset("tracer", ["model.pretrained=none"])
    n = sum(p.numel() for p in build_model(cfg.model)[0].parameters())
    est = estimate_memory(cfg, batch=64)
    assert est.weights == 4 * n and est.teacher == 4 * n and est.optimizer == 8 * n   # all trainable here
    assert estimate_memory(cfg, batch=128).activations == 2 * est.activations        # linear in the batch
    frozen = estimate_memory(cfg.replace(**{"train.freeze_text": True}), batch=64)
    assert frozen.activations < est.activations and frozen.optimizer < est.optimizer
    assert estimate_memory(cfg.replace(**{"teacher.kind": "none", "loss.lambda_sd": 0.0}), batch=64).teacher == 0


# -- item 7: full disk, deleted folder, odd rows, CSV, delete "" -----------------------------------------------

class _FullDisk:
    """A file that takes ``room`` more bytes, then fails with ENOSPC (half a batch lands: a torn line)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            n, self.room = self.f.write(bytes(data[:self.room])), 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_stops_the_run_as_failed_without_torn_lines_or_duplicates(tmp_path):
    w = RunWriter.create(RunConfig(name="disk"), tmp_path / "store", flush_s=3600)
    w.on_step(0, {("loss", "total"): 1.0})
    w.flush()
    w._files["series"] = _FullDisk(w._files["series"], room=10)
    for s in (1, 2, 3):
        w.on_step(s, {("loss", "total"): 1.0 / (s + 1)})
    w.flush()
    assert w.should_stop() and w.final_status("done") == "failed"
    lines = (w.run_dir / "series.jsonl").read_bytes()
    assert lines.endswith(b"\n") and len(lines.splitlines()) == 1        # the torn half-batch was cut off
    w.close("done")                                                     # space is back: the rows land once
    steps = [json.loads(x)["step"] for x in (w.run_dir / "series.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]
    status = json.loads((w.run_dir / schema.STATUS_FILE).read_text())
    assert status["status"] == "failed" and "could not write series.jsonl (No space left on device)" in status["error"]


def test_cli_run_on_a_full_disk_is_failed_not_done(store_dir, capsys, monkeypatch):
    import builtins

    from tracer_core.store import writer as writer_mod
    real_open = builtins.open

    def full_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return _FullDisk(f, room=0) if str(path).endswith("series.jsonl") else f
    monkeypatch.setattr(writer_mod, "open", full_open, raising=False)
    rc, out, err = _train(["--preset", "ft", *[x for s in FAST for x in ("--set", s)]], capsys)
    assert rc == 1 and ": failed," in out and ": done," not in out
    run_id = re.search(r"run (\S+): failed,", out).group(1)     # not "the newest folder": ids of one second tie
    run = store_dir.path / "runs" / run_id
    status = json.loads((run / schema.STATUS_FILE).read_text())
    assert status["status"] == "failed" and "No space left on device" in status["error"]
    assert not list(run.rglob("*.tmp"))


def test_a_failed_checkpoint_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import safetensors.torch
    import torch

    from tracer_core.training.checkpoint import save_checkpoint

    def half_then_enospc(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(safetensors.torch, "save_file", half_then_enospc)
    student = SimpleNamespace(clip=torch.nn.Linear(2, 2))
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "checkpoints" / "step_000001.safetensors", student=student, teacher=None,
                        method=SimpleNamespace(state_dict=dict), optimizer=None, step=1, config={})
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.safetensors"))


def test_deleting_a_running_runs_folder_stops_it_and_never_recreates_it(tmp_path, monkeypatch):
    from tracer_core.jobs import worker
    w = RunWriter.create(RunConfig(name="gone"), tmp_path / "store", flush_s=3600)
    w.on_step(0, {("loss", "total"): 1.0})
    shutil.rmtree(w.run_dir)
    assert w.should_stop() and w.final_status("cancelled") == "failed"
    w.close("cancelled")
    assert not w.run_dir.exists()
    # a worker handed a folder without its config.json refuses instead of training the default config
    run_dir = create_run_folder(RunConfig(name="no config"), tmp_path / "store")
    (run_dir / schema.CONFIG_FILE).unlink()
    trained = []
    monkeypatch.setattr(worker, "_load_entry", lambda entry: lambda *a, **k: trained.append(1))
    assert worker.main([str(run_dir)]) == 1 and not trained
    status = json.loads((run_dir / schema.STATUS_FILE).read_text())
    assert status["status"] == "failed" and "not training with defaults" in status["error"]


def test_an_out_of_range_integer_in_series_skips_that_line_not_the_run(tmp_path):
    spec = schema.TABLE_BY_NAME["series"]
    good = '{"step":1,"name":"loss","context":"total","value":0.5,"wall_time":1.0}'
    huge = '{"step":%d,"name":"loss","context":"total","value":0.5,"wall_time":1.0}' % 2 ** 70
    table, bad = parse_lines(f"{good}\n{huge}\n".encode(), spec)
    assert table.num_rows == 1 and bad == 1
    d = tmp_path / "store"
    with RunWriter.create(RunConfig(name="odd row"), d) as w:
        w.on_step(1, {("loss", "total"): 0.5})
    with open(w.run_dir / "series.jsonl", "a") as f:
        f.write(huge + "\n")
    with RunStore(d, refresh_interval_s=None) as store:
        stats = store.rebuild()
        assert store.list_runs().run_id.tolist() == [w.run_id] and stats["bad_lines"] == 1
        assert store.series([w.run_id]).step.tolist() == [1]


def test_csv_export_escapes_formula_cells(store_dir, tmp_path, capsys):
    with RunWriter.create(RunConfig(name='=HYPERLINK("http://evil/","x")', tags=("@cmd", "ok")), store_dir.path) as w:
        w.on_step(0, {("loss", "-total"): 1.0})
    out = tmp_path / "csv"
    assert cli_main(["export", w.run_id, "--format", "csv", "--out", str(out), "--data-dir", str(store_dir.path)]) == 0
    runs, series = pd.read_csv(out / "runs.csv"), pd.read_csv(out / "series.csv")
    assert runs.name.tolist() == ['\'=HYPERLINK("http://evil/","x")'] and runs.tags.tolist() == ["'@cmd;ok"]
    assert series.context.tolist() == ["'-total"] and series.value.tolist() == [1.0]   # numbers untouched


def test_delete_with_an_empty_id_is_refused(store_dir, capsys):
    before = store_dir.snapshot()
    assert cli_main(["delete", "", "--yes", "--data-dir", str(store_dir.path)]) == 2
    assert "an empty id" in capsys.readouterr().err
    assert cli_main(["delete", "  ", "--yes", "--data-dir", str(store_dir.path)]) == 2
    assert store_dir.snapshot() == before and (store_dir.path / "runs" / store_dir.run_id).is_dir()


def test_building_a_model_keeps_other_loggers_warnings(caplog):
    from tracer_core.config import ModelConfig
    from tracer_core.models import build_model
    level = logging.getLogger().level
    with caplog.at_level(logging.WARNING):
        build_model(ModelConfig(pretrained="none"))
        logging.getLogger("tracer_core.store.writer").warning("could not write series")
    assert logging.getLogger().level == level
    assert [r.getMessage() for r in caplog.records] == ["could not write series"]   # open_clip's note filtered


def test_the_server_only_answers_to_localhost_names():
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "localhost"
    assert set(server["allowedHosts"]) <= {"localhost", "127.0.0.1", "::1", "[::1]"} and server["allowedHosts"]


def test_on_cuda_a_too_large_run_is_warned_about_not_refused(monkeypatch, caplog):
    import torch

    from tracer_core.config import load_preset
    from tracer_core.training.preflight import check_memory
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (2 ** 30, 2 ** 31))   # 1 GiB free
    cfg = load_preset("ft", ["model.name=ViT-B-16", "data.batch_size=512", "model.pretrained=none"])
    with caplog.at_level(logging.WARNING, logger="tracer_core.training.preflight"):
        est = check_memory(cfg, torch.device("cuda"))
    assert est.total > 2 ** 30 and "this run may not fit on cuda" in caplog.text and "1.0 GiB free" in caplog.text
