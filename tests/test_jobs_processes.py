"""Processes that stop or die around a run, and run writers in other processes: a RunWriter subprocess read live
by a store, kill -9 and SIGTERM (of a writer, a CLI run, the dashboard), a process that leaves without its end
report, and the writer's signal-safe stop. The job runner itself: tests/test_jobs.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from types import SimpleNamespace

from job_helpers import ROOT, TINY, tiny, until

from tracer_core.store.runfiles import pid_alive, read_json
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import RunWriter


def test_signal_stop_is_lock_free_and_ends_interrupted(data_dir):
    """The worker's SIGTERM handler calls stop_from_signal, which may run while on_step holds the lock."""
    w = RunWriter.create(tiny(10), data_dir)
    with w._lock:                      # what the handler may interrupt: no deadlock, no lock taken
        w.stop_from_signal("interrupted")
    w.on_step(0, {("loss", "total"): 1.0})
    assert w.should_stop() and w.stop_reason == "interrupted"
    w.on_end(SimpleNamespace(status="cancelled", steps=1, wall_time_s=0, steps_per_s=0, error="",
                             checkpoint="", final_eval={}))
    st = read_json(w.run_dir / "status.json")
    assert (st["status"], st["stop_requested_step"], st["steps_done"]) == ("interrupted", 0, 1)


# -- a RunWriter in another process: live reader, kill -9 -------------------------------------------------------

WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    from types import SimpleNamespace
    from tracer_core.config import LossConfig, OptimConfig, RunConfig, TeacherConfig, TrainConfig
    from tracer_core.store.writer import RunWriter
    data_dir, steps, pause, gate_step = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    w = RunWriter.create(RunConfig(name="subprocess run"), data_dir)
    print(w.run_id, flush=True)
    w.on_start(SimpleNamespace(total_steps=steps, versions={}))
    for s in range(1, steps + 1):
        w.on_step(s, {("loss", "total"): 1.0 / s, ("lr", ""): 0.1})
        if s == gate_step:   # wait until the reader has seen the run live
            while not (w.run_dir / "go").exists():
                time.sleep(0.01)
        time.sleep(pause)
    w.on_end(SimpleNamespace(status="done", steps=steps, wall_time_s=0, steps_per_s=0, error="", checkpoint="",
                             final_eval={}))
""")


def spawn_writer(data_dir, steps, pause, gate_step=-1):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(data_dir), str(steps), str(pause),
                             str(gate_step)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip()


def test_concurrent_writer_process_and_reader(data_dir):
    store = RunStore(data_dir, refresh_interval_s=0.0)   # every query re-ingests
    proc, run_id = spawn_writer(data_dir, 200, 0.002, gate_step=50)
    seen_live = []

    def step():
        runs = store.list_runs()
        n = len(store.series([run_id], names=["loss"], max_points=None))
        if not runs.empty and runs.status.iloc[0] == "running" and 0 < n < 200:
            seen_live.append(n)
            (data_dir / "runs" / run_id / "go").touch()
        return not runs.empty and runs.status.iloc[0] == "done"

    until(step, "the subprocess run to finish")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert seen_live, "the run was never visible while running"
    s = store.series([run_id], max_points=None)
    for name in ("loss", "lr"):
        assert s[s.name == name].step.tolist() == list(range(1, 201))   # no step lost, none twice


def test_kill_9_of_a_writer_process_leaves_readable_interrupted_run(data_dir):
    store = RunStore(data_dir, refresh_interval_s=0.0)
    proc, run_id = spawn_writer(data_dir, 100_000, 0.002)
    until(lambda: len(store.series([run_id], names=["loss"], max_points=None)) >= 30, "30 flushed steps")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    series_file = data_dir / "runs" / run_id / "series.jsonl"
    with open(series_file, "a") as f:
        f.write('{"step":999999,"name":"lo')          # what a kill in the middle of a write leaves
    on_disk = [json.loads(line) for line in series_file.read_text().splitlines()[:-1]]
    store.refresh()
    run = store.get_run(run_id)
    assert run["status"] == "interrupted" and "gone" in run["error"]
    s = store.series([run_id], names=["loss"], max_points=None)
    expected = sorted(r["step"] for r in on_disk if r["name"] == "loss")
    assert s.step.tolist() == expected == list(range(1, len(expected) + 1))


def test_sigterm_of_a_cli_run_stops_after_the_step_as_interrupted_with_every_step(data_dir):
    env = {**os.environ, "TRACER_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "tracer_core", "train", "--preset", "flyp", "--quiet"]
    proc = subprocess.Popen(cmd + [a for s in TINY + ["train.steps=100000"] for a in ("--set", s)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(data_dir, refresh_interval_s=0.0)
    until(lambda: not store.list_runs().empty and
          len(store.series(store.list_runs().run_id.tolist(), names=["loss"], max_points=None)) >= 10, "10 steps")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "interrupted" in out, (out, err[-2000:])
    store.refresh()
    run = store.list_runs().iloc[0]
    status = read_json(data_dir / "runs" / run.run_id / "status.json")
    assert status["status"] == "interrupted" and status["ended"] is not None
    steps = store.series([run.run_id], names=["loss"], contexts=["total"], max_points=None).step.tolist()
    assert steps == list(range(status["steps_done"]))      # the final flush wrote every step it reported
    store.close()


DASHBOARD = textwrap.dedent("""
    import sys, time
    from tracer_core.config import load_preset
    from tracer_core.jobs.runner import JobRunner
    runner = JobRunner(sys.argv[1], poll_s=0.05)
    run_id = runner.submit(load_preset("flyp", sys.argv[2:]))
    while runner.status(run_id).steps_done < 1:
        time.sleep(0.05)
    print(run_id, runner.status(run_id).pid, flush=True)
    time.sleep(600)
""")


def test_dashboard_death_interrupts_its_worker(data_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    dash = subprocess.Popen([sys.executable, "-c", DASHBOARD, str(data_dir), "train.steps=100000", *TINY],
                            stdout=subprocess.PIPE, text=True, env=env)
    run_id, worker_pid = dash.stdout.readline().split()
    dash.kill()
    dash.wait()
    status_file = data_dir / "runs" / run_id / "status.json"
    until(lambda: read_json(status_file)["status"] != "running", "the orphaned worker to stop")
    until(lambda: not pid_alive(int(worker_pid)), "the worker process to exit")
    st = read_json(status_file)
    assert st["status"] == "interrupted" and st["steps_done"] >= 1
    assert RunStore(data_dir).get_run(run_id)["status"] == "interrupted"


def test_process_leaving_without_end_report_is_failed_with_its_rows(data_dir):
    code = textwrap.dedent("""
        import sys
        from tracer_core.config import RunConfig
        from tracer_core.store.writer import RunWriter
        w = RunWriter.create(RunConfig(), sys.argv[1])
        print(w.run_id, flush=True)
        for s in range(7):
            w.on_step(s, {("loss", "total"): 1.0})
        raise SystemExit(3)      # e.g. building the model failed before training.run reported anything
    """)
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    run_id = out.stdout.strip()
    run = RunStore(data_dir).get_run(run_id)
    assert out.returncode == 3 and run["status"] == "failed" and "before the run reported" in run["error"]
    assert run["steps_done"] == 7
