"""Data-parallel training under torchrun: 2 real gloo processes on the CPU against one process.

The claim of training/distributed.py is that N ranks on shards of the global batch train the same model as one
process on the whole batch (global-batch contrastive matrices via a differentiable all-gather, gradients
averaged). So the test compares the two runs' final weights, evaluations and KL summaries, and checks that only
rank 0 wrote the run store.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tracer_core.config import load_preset
from tracer_core.data import load_dataset
from tracer_core.models import build_model
from tracer_core.training.batches import batch_iterator
from tracer_core.training.checkpoint import load_checkpoint
from tracer_core.training.distributed import Dist, shard_size

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]',
            "data.batch_size=16", "data.max_eval_samples=64", "train.threads=1", "train.steps=6",
            "train.similarity_probe=0"]


def _cmd(preset: str, nproc: int, extra: list[str] = (), flags: list[str] = ()) -> list[str]:
    """`python -m tracer_core train --json` (under torchrun when nproc > 1) with SETTINGS + extra overrides."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)] if nproc > 1
                else [sys.executable])
    return (launcher + ["-m", "tracer_core", "train", "--preset", preset, "--json", *flags]
            + [a for s in [*SETTINGS, *extra] for a in ("--set", s)])


def _train(preset: str, out: Path, env: dict, nproc: int, store: bool, extra: list[str] = ()) -> tuple[dict, str]:
    cmd = _cmd(preset, nproc, extra, flags=["--out", str(out)] + ([] if store else ["--no-store"]))
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, res.stdout      # rank 1 prints nothing
    return json.loads(lines[0]), res.stderr


def _weights(path: Path, part: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)[part]
    return {k.removeprefix("clip."): v.float() for k, v in (state["module"] if part == "teacher" else state).items()
            if torch.is_tensor(v) and v.is_floating_point()}


def _drop_key_bias(name: str, t: torch.Tensor) -> torch.Tensor:
    """The key third of an attention in_proj bias has an exactly-zero gradient (softmax ignores a constant
    shift), so Adam turns its float round-off into full-size, rank-count-dependent updates: not comparable."""
    if name.endswith("in_proj_bias"):
        d = t.shape[0] // 3
        return torch.cat([t[:d], t[2 * d:]])
    return t


@pytest.mark.parametrize("preset", ["tracer", "lpft"])
def test_two_ranks_train_the_same_model_as_one_process(preset, tmp_path):
    env = {**os.environ, "TRACER_DATA_DIR": str(tmp_path / "store"), "OMP_NUM_THREADS": "1",
           "TRACER_WARM_WORKER": "0"}
    one, _ = _train(preset, tmp_path / "one", env, 1, store=False)
    two, log = _train(preset, tmp_path / "two", env, 2, store=preset == "tracer")
    assert one["status"] == two["status"] == "done" and one["steps"] == two["steps"] == 6
    for metric in ("accuracy", "nll", "ece", "ece_batch"):   # evaluation is sharded over the 2 ranks too
        assert two["final_eval"]["synthetic"][metric] == pytest.approx(one["final_eval"]["synthetic"][metric],
                                                                       rel=1e-3, abs=1e-4)
    ckpt = "checkpoints/step_000006.safetensors"
    parts = ["student", "teacher"] if preset == "tracer" else ["student"]
    for part in parts:
        a, b = _weights(tmp_path / "one" / ckpt, part), _weights(tmp_path / "two" / ckpt, part)
        assert a.keys() == b.keys()
        worst = max((_drop_key_bias(k, a[k]) - _drop_key_bias(k, b[k])).abs().max().item() for k in a)
        assert worst < 2e-6, f"{part} weights differ by {worst}"
    if preset == "tracer":
        # the teacher statistics are computed on the gathered global batch: same series as one process
        for key in ("teacher_student_kl/combined", "teacher_avg_confidence/combined", "student_gt_prob/combined"):
            for summary in ("auc_normalized", "last_value"):
                assert two["summaries"][key][summary] == pytest.approx(one["summaries"][key][summary], rel=1e-3)
        _check_store(tmp_path / "store", two["run_id"])


def _check_store(data_dir: Path, run_id: str) -> None:
    from tracer_core.store.runstore import RunStore

    runs = [p.name for p in (data_dir / "runs").iterdir() if not p.name.startswith(".")]
    assert runs == [run_id]                                     # only rank 0 created a run folder
    status = json.loads((data_dir / "runs" / run_id / "status.json").read_text())
    assert status["world_size"] == 2 and "x2 (torch.distributed, gloo)" in status["device"]
    with RunStore(data_dir) as store:
        run = store.get_run(run_id)
        assert run["status"] == "done" and run["device"] == "cpu x2 (torch.distributed, gloo)"
        s = store.series([run_id], ["loss"], ["total"], max_points=None)
        assert s.step.tolist() == list(range(6))               # every step once, not once per rank
        assert len(store.artifacts([run_id])) == 1


def _declared_folders(root: Path) -> tuple[str, int]:
    """A 3-class train folder (one corrupt JPEG among 10 files) and two eval folders (one with a corrupt
    file), declared in a datasets file with a one-template head. -> (datasets file, corrupt train index)."""
    from test_declared import _jpegs, _write    # the stand-in generators of the declared-set tests
    for i, name in enumerate(("bird", "cat", "dog")):
        _jpegs(str(root / "train" / name), 3, i)
        _jpegs(str(root / "val" / name), 2, 10 + i)
        _jpegs(str(root / "shift" / name), 2, 20 + i)
    for folder in ("train/cat", "shift/dog"):
        (root / folder / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "one.txt").write_text("a photo of a {}.\n")
    file = _write(str(root), [{"name": f"tiny_{n}", "kind": "imagefolder", "path": n, "templates": "one.txt"}
                              for n in ("train", "val", "shift")])
    return file, load_dataset("tiny_train", split="train", datasets_file=file).paths.index(
        str(root / "train" / "cat" / "broken.jpg"))


def test_two_ranks_on_declared_file_sets_evaluate_as_one_process_and_count_a_corrupt_image_once(tmp_path):
    """torchrun with declared image folders: both ranks meet the corrupt train file (a seed chosen so the
    sharded sampler hands it to each), the run stores it once; the declared eval sets (one with a corrupt
    file, dropped) give the one-process numbers."""
    from tracer_core.data.loader import ShardedBatchSampler
    file, bad = _declared_folders(tmp_path / "sets")
    steps, batch = 6, 4

    def ranks_meeting(seed: int) -> set[int]:
        met = set()
        for rank in (0, 1):
            it = iter(ShardedBatchSampler(10, batch, seed, 1, True, rank, 2))
            met |= {rank for _ in range(steps) if bad in [i for i, _, _ in next(it)]}
        return met
    seed = next(s for s in range(100) if ranks_meeting(s) == {0, 1})
    extra = [f"data.datasets_file={file}", "data.train_set=tiny_train", 'data.eval_sets=["tiny_val","tiny_shift"]',
             f"data.batch_size={batch}", f"train.steps={steps}", f"train.seed={seed}", "data.num_workers=0",
             "train.eval_at_start=false"]
    env = {**os.environ, "TRACER_DATA_DIR": str(tmp_path / "store"), "OMP_NUM_THREADS": "1",
           "TRACER_WARM_WORKER": "0"}
    one, _ = _train("tracer", tmp_path / "one", env, 1, store=False, extra=extra)
    two, _ = _train("tracer", tmp_path / "two", env, 2, store=True, extra=extra)
    assert one["status"] == two["status"] == "done" and one["skipped_images"] == two["skipped_images"] == 1
    for name in ("tiny_val", "tiny_shift"):
        for metric in ("accuracy", "nll", "ece", "ece_batch", "teacher_accuracy"):
            assert two["final_eval"][name][metric] == pytest.approx(one["final_eval"][name][metric], rel=1e-3, abs=1e-4)
    assert two["final_eval"]["tiny_shift"]["skipped_images"] == one["final_eval"]["tiny_shift"]["skipped_images"] == 1
    assert "skipped_images" not in two["final_eval"]["tiny_val"]
    from tracer_core.store.runstore import RunStore
    status = json.loads((tmp_path / "store" / "runs" / two["run_id"] / "status.json").read_text())
    assert status["world_size"] == 2 and status["skipped_images"] == 1
    with RunStore(tmp_path / "store") as store:
        assert store.get_run(two["run_id"])["skipped_images"] == 1          # once, not once per rank
        counts = store.series([two["run_id"]], ["skipped_images"], ["train"], max_points=None)
        assert counts.step.tolist() == list(range(steps)) and counts.value.max() == 1


def test_rank_shards_concatenate_to_the_single_process_batch():
    cfg = load_preset("flyp", SETTINGS)
    _, tokenizer = build_model(cfg.model, "cpu")
    ds = load_dataset("synthetic", split="train", image_size=28, seed=0)
    single = batch_iterator(ds, tokenizer, 12, seed=3, device="cpu")
    shards = [batch_iterator(ds, tokenizer, 12, seed=3, device="cpu", rank=r, world_size=3) for r in range(3)]
    for _ in range(4):
        whole, parts = next(single), [next(it) for it in shards]
        assert all(len(p.labels) == 4 for p in parts)
        for field in ("images", "tokens", "labels"):
            assert torch.equal(getattr(whole, field), torch.cat([getattr(p, field) for p in parts]))


def test_global_batch_must_split_evenly_over_ranks():
    assert shard_size(512, Dist(rank=0, world_size=4)) == 128
    with pytest.raises(ValueError, match="data.batch_size=30 is the global batch and must be divisible by the 4"):
        shard_size(30, Dist(rank=1, world_size=4))


def _launch(tmp_path: Path, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TRACER_DATA_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(_cmd("tracer", 2, extra), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(tmp_path: Path, proc: subprocess.Popen, min_bytes: int) -> Path:
    """The run folder once rank 0's writer has flushed more than ``min_bytes`` of series rows."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")] \
            if (tmp_path / "runs").exists() else []
        if runs and (runs[0] / "series.jsonl").exists() and (runs[0] / "series.jsonl").stat().st_size > min_bytes:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError(f"no series rows after 240 s: {proc.communicate(timeout=60)}")


def _only_run(tmp_path: Path) -> Path:
    runs = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1
    return runs[0]


def test_nan_on_the_ranks_fails_every_rank_with_a_clear_message(tmp_path):
    proc = _launch(tmp_path, ["optim.lr=1e30", "optim.warmup_steps=0"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert err.count("training failed: non-finite loss at step") == 2      # both ranks stop together, no hang
    status = json.loads((_only_run(tmp_path) / "status.json").read_text())
    assert status["status"] == "failed" and "non-finite loss" in status["error"]


def test_cancel_seen_by_rank_0_stops_both_ranks(tmp_path):
    from tracer_core.store import schema

    proc = _launch(tmp_path, ["train.steps=2000"])
    run = _wait_for_rows(tmp_path, proc, 0)      # live rows from rank 0's writer
    (run / schema.CANCEL_FILE).touch()
    out, err = proc.communicate(timeout=240)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "cancelled" and 0 < result["steps"] < 2000
    assert json.loads((run / "status.json").read_text())["status"] == "cancelled"


def _children(pid: int) -> list[int]:
    """Child pids of ``pid`` from /proc (field 4 of /proc/<pid>/stat is the parent pid)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_a_killed_rank_fails_the_run_with_a_clear_message_and_keeps_its_rows(tmp_path):
    proc = _launch(tmp_path, ["train.steps=3000"])
    run = _wait_for_rows(tmp_path, proc, 20_000)  # rank 0 has flushed some steps
    rank0 = json.loads((run / "status.json").read_text())["pid"]
    children = _children(proc.pid)                 # torchrun's worker processes: rank 0 and rank 1
    rank1 = [c for c in children if c != rank0]
    assert len(rank1) == 1, children
    os.kill(rank1[0], 9)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode != 0
    status = json.loads((run / "status.json").read_text())
    # rank 0 notices in its next collective and ends the run itself (or, if torchrun's SIGTERM wins, stops
    # after the step as interrupted); either way the status is final and says why
    assert status["status"] in ("failed", "interrupted") and status["ended"] is not None, status
    if status["status"] == "failed":
        assert "another torchrun rank stopped" in status["error"]
    from tracer_core.store.runstore import RunStore
    with RunStore(tmp_path) as store:
        steps = store.series([run.name], ["loss"], ["total"], max_points=None).step.tolist()
    assert steps == list(range(len(steps))) and len(steps) >= status["steps_done"] > 0   # every flushed step


def test_collective_guard_keeps_other_errors_and_single_process_errors_unchanged():
    from tracer_core.training.distributed import collective

    with pytest.raises(RuntimeError, match="^CUDA out of memory") as info:
        with collective("the backward pass"):
            raise RuntimeError("CUDA out of memory")
    assert type(info.value) is RuntimeError
    with pytest.raises(RuntimeError, match="Connection closed by peer") as info:   # no process group here
        with collective("the backward pass"):
            raise RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer")
    assert type(info.value) is RuntimeError
