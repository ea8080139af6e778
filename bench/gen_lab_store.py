"""Synthetic lab store in the run writer's exact format: ``python bench/gen_lab_store.py DATA_DIR
[--runs 1000] [--series 20] [--steps 10000]`` (default: 1,000 runs x 20 series x 10,000 steps = 200 M points).

Fast: instead of calling :class:`RunWriter` per step (its background flusher), each run folder is created by
the writer's own :func:`create_run_folder` (config.json, status.json, atomic rename) and its JSONL files are
written in one go with the writer's line format (``writer._num`` for values, the same key order and
separators as ``RunWriter._series_lines`` / ``on_eval``); status.json ends as ``RunWriter.close`` leaves it.
tests/test_store_scale.py checks that the store ingests a generated run identically to a RunWriter-written one.

Configs vary like a lab's: methods x teachers x learning rates x seeds (seed groups for bands and group rows).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import lab_store_parser  # noqa: E402
from tracer_core.config import OptimConfig, RunConfig, TeacherConfig, TrainConfig  # noqa: E402
from tracer_core.store import schema  # noqa: E402
from tracer_core.store.runfiles import HOST, write_json_atomic  # noqa: E402
from tracer_core.store.writer import _line, _num, create_run_folder  # noqa: E402

NAMES = [(n, c) for n in ("teacher_avg_entropy", "teacher_avg_confidence", "teacher_student_agreement",
                          "teacher_student_kl", "teacher_prediction_diversity", "teacher_gt_prob")
         for c in ("img", "text", "combined")] + [("loss", "total"), ("lr", "")]
EVAL_SETS = ("mnist", "colored_mnist", "corrupted_mnist")
VARIANTS = [("flyp", "none"), ("ft", "none"), ("tracer", "ema"), ("tracer", "wma")]
LRS = (1e-5, 3e-5)


def config_for(i: int, steps: int) -> RunConfig:
    method, teacher = VARIANTS[i % len(VARIANTS)]
    lr = LRS[(i // len(VARIANTS)) % len(LRS)]
    seed = i // (len(VARIANTS) * len(LRS))
    return RunConfig(name=f"{method}-{teacher}-lr{lr:g}-s{seed}", method=method,
                     teacher=TeacherConfig(kind=teacher), optim=OptimConfig(lr=lr),
                     train=TrainConfig(seed=seed, steps=steps))


def values_for(rng: np.random.Generator, n_series: int, steps: int) -> np.ndarray:
    """``[steps, n_series]``: a decaying trend + random-walk drift + noise (sigma 0.05), NaN-free."""
    t = np.arange(1, steps + 1, dtype=np.float64)[:, None]
    trend = 0.5 + 0.5 * np.exp(-t / (0.2 * steps)) * rng.uniform(0.5, 1.5, n_series)
    drift = np.cumsum(rng.normal(0, 0.002, (steps, n_series)), axis=0)
    return trend + drift + rng.normal(0, 0.05, (steps, n_series))


def series_text(step_list, times, names, vals) -> str:
    """The lines RunWriter._series_lines writes for these steps (same fragments, same float repr)."""
    keys = [f',"name":{json.dumps(n)},"context":{json.dumps(c)},"value":' for n, c in names]
    out = []
    for i, step in enumerate(step_list):
        tail = f',"wall_time":{times[i]!r}}}'
        head = f'{{"step":{step}'
        out.extend(f"{head}{k}{_num(v)}{tail}" for k, v in zip(keys, vals[i].tolist()))
    return "\n".join(out) + "\n"


def write_run(data_dir: Path, cfg: RunConfig, step_list, times, names, vals, evals: dict, *,
              status: str = "done") -> Path:
    """One finished run folder, file for file as RunWriter leaves it."""
    run_dir = create_run_folder(cfg, data_dir, status="running")
    with open(run_dir / "series.jsonl", "wb") as f:
        f.write(series_text(step_list, times, names, vals).encode("utf-8"))
    last = int(step_list[-1])
    lines = [_line({"step": last, "dataset": ds, "metric": m, "value": float(v)})
             for ds, metrics in evals.items() for m, v in metrics.items()]
    with open(run_dir / "evaluations.jsonl", "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    st = json.loads((run_dir / schema.STATUS_FILE).read_text())
    t0, t1 = float(times[0]), float(times[-1])
    st.update(status=status, pid=os.getpid(), host=HOST, heartbeat=t1, error="", step=last,
              steps_done=len(step_list), total=len(step_list), started=t0, ended=t1,
              steps_per_s=(len(step_list) - 1) / max(t1 - t0, 1e-9), versions={"python": sys.version.split()[0]},
              device="cpu", precision="fp32", n_params=None, n_trainable=None, world_size=1,
              summary={"steps": len(step_list), "wall_time_s": t1 - t0, "steps_per_s": None, "checkpoint": "",
                       "final_eval": evals})
    write_json_atomic(run_dir / schema.STATUS_FILE, st)
    return run_dir


def generate(data_dir: Path, runs: int, n_series: int, steps: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    names = NAMES[:n_series] + [(f"extra_{k}", "") for k in range(max(0, n_series - len(NAMES)))]
    step_list = list(range(1, steps + 1))
    ids = []
    for i in range(runs):
        cfg = config_for(i, steps)
        times = (1.7e9 + i * 1e4 + 0.3 * np.arange(steps)).tolist()
        acc = float(np.clip(0.8 + 0.05 * (i % len(VARIANTS)) + rng.normal(0, 0.01), 0, 1))
        evals = {ds: {"accuracy": acc - 0.1 * k} for k, ds in enumerate(EVAL_SETS)}
        ids.append(write_run(data_dir, cfg, step_list, times, names, values_for(rng, len(names), steps), evals).name)
    return ids


def main(argv=None) -> None:
    a = lab_store_parser(__doc__, "data_dir").parse_args(argv)
    t0 = time.perf_counter()
    generate(a.data_dir, a.runs, a.series, a.steps)
    print(f"wrote {a.runs} runs x {a.series} series x {a.steps} steps = {a.runs * a.series * a.steps:,} points "
          f"to {a.data_dir} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
