"""Job runner: real short trainings in supervised worker subprocesses, against a real store in tmp_path.

Behaviour only: waits poll the run's status with a generous limit that only guards against a hang.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tracer_core.config import load_preset
from tracer_core.jobs.runner import JobRunner, idempotency_key
from tracer_core.store import schema
from tracer_core.store.runfiles import HOST, pid_alive, read_json, write_json_atomic
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import RunWriter, create_run_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]',
        "train.eval_at_start=false", "data.max_eval_samples=32", "data.batch_size=8"]


def tiny(steps: int, *extra: str):
    return load_preset("flyp", [f"train.steps={steps}", *TINY, *extra])


def until(fn, what, limit_s=120.0):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def runner(data_dir):
    r = JobRunner(data_dir, max_concurrent=1, poll_s=0.05, cancel_grace_s=60)
    yield r
    r.shutdown(cancel_running=True)


def test_queue_cancel_within_one_step_then_next_run_completes(runner, data_dir):
    store = RunStore(data_dir, refresh_interval_s=0.0)     # a live reader in this process, as the dashboard
    long_id = runner.submit(tiny(100_000), client_token="tab-1")
    short_id = runner.submit(tiny(4), client_token="tab-1")
    assert runner.submit(tiny(4), client_token="tab-1") == short_id          # double click: one run
    extra_id = runner.submit(tiny(4), client_token="tab-2")                   # another tab: its own run
    assert len({long_id, short_id, extra_id}) == 3
    until(lambda: runner.status(short_id).queue_position == 0, "the long run to leave the queue")
    assert runner.status(short_id).status == "queued"
    assert runner.cancel(extra_id)                                           # queued: cancelled at once
    assert runner.status(extra_id).status == "cancelled"
    assert not (data_dir / "runs" / extra_id / "series.jsonl").exists()
    again = runner.submit(tiny(4), client_token="tab-2")                     # after a cancel: a new run
    assert again != extra_id and runner.cancel(again)

    def loss_steps(run_id):
        return store.series([run_id], names=["loss"], contexts=["total"], max_points=None).step.tolist()

    until(lambda: len(loss_steps(long_id)) >= 3 and runner.status(long_id).steps_done >= 3,
          "the long run's steps to reach the store live")
    running = runner.status(long_id)
    assert running.status == "running" and 0 < running.progress < 1 and running.eta_s and running.eta_s > 0
    assert store.get_run(long_id)["status"] == "running" and runner.status(short_id).status == "queued"
    assert runner.cancel(long_id)
    final = runner.wait(long_id, timeout=120)
    st = read_json(data_dir / "runs" / long_id / "status.json")
    assert final.status == "cancelled" and st["step"] - st["stop_requested_step"] <= 1
    assert loss_steps(long_id) == list(range(final.steps_done))              # no step lost or doubled

    done = runner.wait(short_id, timeout=120)
    assert (done.status, done.steps_done, done.progress) == ("done", 4, 1.0)
    assert loss_steps(short_id) == [0, 1, 2, 3]
    assert set(store.evaluations([short_id]).metric) >= {"accuracy", "ece", "nll", "brier"}
    assert store.get_run(long_id)["status"] == "cancelled" and store.get_run(short_id)["status"] == "done"
    assert len(store.artifacts([short_id])) == 1


def test_kill_9_of_a_worker_marks_interrupted_and_keeps_flushed_steps(runner, data_dir):
    run_id = runner.submit(tiny(100_000))
    store = RunStore(data_dir, refresh_interval_s=0.0)
    until(lambda: len(store.series([run_id], names=["loss"], contexts=["total"], max_points=None)) >= 3,
          "three flushed steps")
    pid = runner.status(run_id).pid
    os.kill(pid, signal.SIGKILL)
    final = runner.wait(run_id, timeout=60)
    assert final.status == "interrupted" and "signal 9" in final.error
    series_file = data_dir / "runs" / run_id / "series.jsonl"
    lines = series_file.read_text().splitlines()
    if lines and not series_file.read_text().endswith("\n"):
        lines = lines[:-1]                                                   # a torn last line is fine
    on_disk = sorted(r["step"] for r in map(json.loads, lines) if r["name"] == "loss" and r["context"] == "total")
    store.refresh()
    assert store.get_run(run_id)["status"] == "interrupted"
    steps = store.series([run_id], names=["loss"], contexts=["total"], max_points=None).step.tolist()
    assert steps == on_disk == list(range(len(on_disk))) and len(steps) >= 3


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


def test_restart_marks_dead_runs_interrupted_and_leaves_the_rest(data_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ids = {}
    for label, status, pid, host, beat in [
            ("crashed", "running", dead.pid, HOST, time.time()),
            ("orphan_queued", "queued", dead.pid, HOST, time.time()),
            ("finished", "done", dead.pid, HOST, time.time()),
            ("live_cli", "running", os.getpid(), HOST, time.time()),
            ("other_host", "running", 1, "elsewhere", time.time() - 3600)]:
        path = create_run_folder(tiny(5), data_dir, status=status)
        st = read_json(path / "status.json")
        write_json_atomic(path / "status.json", {**st, "pid": pid, "host": host, "heartbeat": beat})
        ids[label] = path.name
    runner = JobRunner(data_dir)
    try:
        assert sorted(runner.recovered) == sorted([ids["crashed"], ids["orphan_queued"]])
        on_file = {k: read_json(data_dir / "runs" / v / "status.json")["status"] for k, v in ids.items()}
        assert on_file == {"crashed": "interrupted", "orphan_queued": "interrupted", "finished": "done",
                           "live_cli": "running", "other_host": "running"}
        assert runner.status(ids["other_host"]).status == "interrupted"     # stale heartbeat: shown, not written
        assert runner.status(ids["live_cli"]).status == "running"
        assert not runner.cancel(ids["finished"])
        assert runner.cancel(ids["live_cli"])                               # a CLI run: via its cancel file
        assert (data_dir / "runs" / ids["live_cli"] / schema.CANCEL_FILE).exists()
    finally:
        runner.shutdown()


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


def test_worker_that_cannot_start_training_is_failed_with_a_message(data_dir):
    runner = JobRunner(data_dir, entry="no_such_module:run", poll_s=0.05)
    try:
        run_id = runner.submit(tiny(3))
        final = runner.wait(run_id, timeout=60)
        assert final.status == "failed" and "no_such_module" in final.error
    finally:
        runner.shutdown()


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


def test_idempotency_key_depends_on_config_and_token():
    a, b = tiny(3), tiny(4)
    assert idempotency_key(a, "t") == idempotency_key(tiny(3), "t")
    assert len({idempotency_key(a, "t"), idempotency_key(a, "u"), idempotency_key(b, "t")}) == 3


# -- warm start: a pre-warmed spare worker takes the next run ---------------------------------------------------

def run_rows(data_dir, run_id):
    """Everything a run reported, minus what is timing rather than result."""
    store = RunStore(data_dir, refresh_interval_s=0.0)
    s, ev = store.series([run_id], max_points=None), store.evaluations([run_id])
    store.close()
    s = s[~s.name.isin(["step_time", "data_wait", "images_per_s"])].sort_values(["step", "name", "context"])   # timings
    ev = ev.sort_values(["step", "dataset", "metric"])
    return (s[["step", "name", "context", "value"]].to_numpy().tolist(),
            ev[["step", "dataset", "metric", "value"]].to_numpy().tolist())


def test_warm_worker_runs_a_job_with_the_same_results_as_a_cold_start(tmp_path):
    results = {}
    for mode in ("cold", "warm"):
        runner = JobRunner(tmp_path / mode, warm=mode == "warm", poll_s=0.05)
        try:
            spare = runner.warm_pid if runner.wait_warm(timeout=180) else None
            assert (spare is not None) == (mode == "warm")
            run_id = runner.submit(tiny(5, "train.eval_every=2"))
            final = runner.wait(run_id, timeout=180)
            assert (final.status, final.steps_done) == ("done", 5)
            assert ("warm start" in (tmp_path / mode / "runs" / run_id / schema.WORKER_LOG).read_text()) == \
                (mode == "warm") == (final.pid == spare)        # the spare ran it
            if mode == "warm":
                until(lambda: runner.warm_pid not in (None, spare), "the next spare")
        finally:
            runner.shutdown(cancel_running=True)
        results[mode] = run_rows(tmp_path / mode, run_id)
    assert results["warm"][0] and results["warm"][1]
    assert results["warm"] == results["cold"]


def test_cancel_and_sigterm_escalation_on_warm_workers(runner, data_dir):
    assert runner.warm and runner.wait_warm(timeout=180)
    spare = runner.warm_pid
    run_id = runner.submit(tiny(100_000))
    until(lambda: runner.status(run_id).steps_done >= 2, "two steps on the warm worker")
    assert runner.status(run_id).pid == spare
    assert runner.warm_pid is None            # by default no next spare warms up beside a running run
    assert runner.cancel(run_id)                               # the cancel file, seen at the next step
    final = runner.wait(run_id, timeout=120)
    st = read_json(data_dir / "runs" / run_id / "status.json")
    assert final.status == "cancelled" and st["step"] - st["stop_requested_step"] <= 1

    runner.cancel_grace_s = 0.0                                # now SIGTERM at once: the worker's handler
    runner.spare_while_running = True
    assert runner.wait_warm(timeout=180)                       # the runner was idle: a new spare
    second = runner.warm_pid
    run_id = runner.submit(tiny(100_000, "train.seed=1"))
    until(lambda: runner.status(run_id).steps_done >= 1, "a step on the second warm worker")
    assert runner.status(run_id).pid == second
    until(lambda: runner.warm_pid not in (None, second), "a third spare beside the running run")
    assert runner.cancel(run_id)
    final = runner.wait(run_id, timeout=120)
    assert final.status == "cancelled" and not pid_alive(second)


def test_dead_spare_falls_back_to_a_cold_start(runner, data_dir, monkeypatch):
    def run_cold_after(kill_spare):
        assert runner.wait_warm(timeout=180)
        spare = runner.warm_pid
        run_id = kill_spare(spare)
        final = runner.wait(run_id, timeout=180)
        log = (data_dir / "runs" / run_id / schema.WORKER_LOG).read_text()
        assert final.status == "done" and final.pid != spare and "warm start" not in log, (final, spare, log)

    def dead_before_the_hand_over(spare):
        with runner._lock:                  # hold the supervisor off: the submit must meet the dead spare
            os.kill(spare, signal.SIGKILL)
            until(lambda: not pid_alive(spare), "the spare to die")
            return runner.submit(tiny(3))

    def dead_after_the_hand_over(spare):    # stopped, it cannot read the run folder it is handed
        os.kill(spare, signal.SIGSTOP)
        run_id = runner.submit(tiny(3, "train.seed=1"))
        until(lambda: runner.status(run_id).queue_position is None, "the hand-over")
        os.kill(spare, signal.SIGKILL)
        return run_id

    run_cold_after(dead_before_the_hand_over)
    run_cold_after(dead_after_the_hand_over)
    assert runner.warm and runner.wait_warm(timeout=180)      # warm starts stay on after two failures
    monkeypatch.setenv("TRACER_WARM_WORKER", "0")
    off = JobRunner(data_dir / "off", poll_s=0.05)
    try:
        assert not off.warm and not off.wait_warm(timeout=1) and off.warm_pid is None
    finally:
        off.shutdown()


SPARE_HOLDER = textwrap.dedent("""
    import sys, time
    from tracer_core.jobs.runner import JobRunner
    runner = JobRunner(sys.argv[1], poll_s=0.05, warm=True)
    assert runner.wait_warm(timeout=180)
    print(runner.warm_pid, flush=True)
    time.sleep(600)
""")


def test_shutdown_and_parent_death_leave_no_spare_behind(data_dir):
    for wait_ready in (True, False):                           # idle, and still warming up
        runner = JobRunner(data_dir, poll_s=0.05, warm=True)
        pid = runner.warm_pid if wait_ready and runner.wait_warm(timeout=180) else \
            until(lambda: runner.warm_pid, "a spare to start")
        runner.shutdown()
        assert not pid_alive(pid) and runner.warm_pid is None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", SPARE_HOLDER, str(data_dir)], stdout=subprocess.PIPE,
                              text=True, env=env)
    pid = int(holder.stdout.readline())
    assert pid_alive(pid)
    holder.kill()                                              # the dashboard dies without a shutdown
    holder.wait()
    until(lambda: not pid_alive(pid), "the orphaned spare to exit")
