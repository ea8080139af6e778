"""Job runner: real short trainings in supervised worker subprocesses, against a real store in tmp_path: the
queue, cancel, recovery after a restart, failures, idempotency, warm starts. Processes that die or write from
elsewhere: tests/test_jobs_processes.py.

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

import pytest
from job_helpers import ROOT, tiny, until

from tracer_core.jobs.runner import JobRunner, idempotency_key
from tracer_core.store import schema
from tracer_core.store.runfiles import HOST, pid_alive, read_json, write_json_atomic
from tracer_core.store.runstore import RunStore
from tracer_core.store.writer import create_run_folder


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


def test_worker_that_cannot_start_training_is_failed_with_a_message(data_dir):
    runner = JobRunner(data_dir, entry="no_such_module:run", poll_s=0.05)
    try:
        run_id = runner.submit(tiny(3))
        final = runner.wait(run_id, timeout=60)
        assert final.status == "failed" and "no_such_module" in final.error
    finally:
        runner.shutdown()


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
