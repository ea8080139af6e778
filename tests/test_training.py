"""Real short trainings of the tiny CLIP on the synthetic set (CPU, random init, no store)."""
import math

import pytest
import torch

from tracer_core.config import load_preset
from tracer_core.models import CheckpointError, build_model
from tracer_core.training import Hooks, run
from tracer_core.training.checkpoint import load_checkpoint

FAST = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]',
        "data.batch_size=16", "data.max_eval_samples=64", "train.threads=1"]


class Recorder(Hooks):
    def __init__(self, stop_after=None):
        self.steps, self.evals, self.ends, self.ckpts, self.stop_after = [], [], [], [], stop_after

    def on_step(self, step, scalars):
        self.steps.append((step, dict(scalars)))

    def on_eval(self, report):
        self.evals.append(report)

    def on_checkpoint(self, step, path):
        self.ckpts.append(path)

    def on_end(self, summary):
        self.ends.append(summary)

    def should_stop(self):
        return self.stop_after is not None and len(self.steps) >= self.stop_after


def test_tracer_20_steps_kl_series_and_teacher_moves(tmp_path):
    cfg = load_preset("tracer", FAST + ["train.steps=20"])
    rec = Recorder()
    summary = run(cfg, rec, output_dir=tmp_path)
    assert summary.status == "done" and summary.steps == 20
    kl = {s: sc.get(("teacher_student_kl", "combined")) for s, sc in rec.steps}
    assert kl[0] is None                                     # no distillation or statistics at step 0
    assert all(kl[s] is not None and math.isfinite(kl[s]) for s in range(1, 20))
    assert {("loss", "crd_loss"), ("loss", "fd_loss"), ("loss", "icl_loss"), ("loss", "cross_kd_loss"),
            ("loss", "clip_loss"), ("loss", "cross_fnorm_loss")} <= set(rec.steps[5][1])
    assert ("loss", "crd_loss") not in rec.steps[0][1]
    # evaluation at start (step 0) and at the end, with teacher numbers at the end
    assert [e.step for e in rec.evals] == [0, 20]
    assert "teacher_accuracy" in rec.evals[-1].metrics["synthetic"]
    assert summary.summaries["teacher_student_kl/combined"]["auc_normalized"] > 0
    # the checkpoint holds the teacher with its counters; the teacher differs from the student
    state = load_checkpoint(rec.ckpts[-1])
    assert state["teacher"]["num_updates"] == 20 and state["teacher"]["running_sum"] > 0
    assert state["config"]["teacher"]["kind"] == "wma"
    diffs = [(state["teacher"]["module"][f"clip.{k}"] - v).abs().max().item() for k, v in state["student"].items()
             if v.is_floating_point()]
    assert max(diffs) > 1e-4


def test_ema_every_step_collapses_relative_to_wma():
    wma = run(load_preset("tracer", FAST + ["train.steps=30", "optim.lr=5e-4"]))
    ema = run(load_preset("tracer_ema", FAST + ["train.steps=30", "optim.lr=5e-4"]))
    a_wma = wma.summaries["teacher_student_kl/combined"]["auc_normalized"]
    a_ema = ema.summaries["teacher_student_kl/combined"]["auc_normalized"]
    assert a_ema < a_wma


def test_same_seed_same_numbers_and_cancel_stops_after_one_step():
    cfg = load_preset("flyp", FAST + ["train.steps=6"])
    r1, r2 = Recorder(), Recorder()
    run(cfg, r1)
    run(cfg, r2)
    assert [s[1][("loss", "total")] for s in r1.steps] == [s[1][("loss", "total")] for s in r2.steps]
    stopper = Recorder(stop_after=2)
    summary = run(load_preset("flyp", FAST + ["train.steps=50"]), stopper)
    assert summary.status == "cancelled" and len(stopper.steps) == 2


def test_ft_method_trains_image_tower_only_and_has_ce_term():
    rec = Recorder()
    run(load_preset("ft", FAST + ["train.steps=4"]), rec)
    assert ("loss", "ce_loss") in rec.steps[0][1] and ("loss", "clip_loss") not in rec.steps[0][1]
    assert rec.ends[0].status == "done"


def test_nan_loss_fails_with_a_clear_message():
    rec = Recorder()
    with pytest.raises(RuntimeError, match="non-finite loss at step"):
        run(load_preset("flyp", FAST + ["train.steps=5", "optim.lr=1e30", "optim.warmup_steps=0"]), rec)
    assert rec.ends[0].status == "failed" and "non-finite" in rec.ends[0].error


def test_layer_freezing_keeps_frozen_weights_fixed(tmp_path):
    rec = Recorder()
    cfg = load_preset("flyp", FAST + ["train.steps=3", "train.freeze_text=true", "train.trainable_layers=1"])
    run(cfg, rec, output_dir=tmp_path)
    torch.manual_seed(cfg.train.seed)        # same seed as the run: rebuild the initial weights
    start, _ = build_model(cfg.model)
    end = load_checkpoint(rec.ckpts[-1])["student"]
    s0 = start.clip.state_dict()
    assert torch.equal(end["token_embedding.weight"], s0["token_embedding.weight"])
    assert torch.equal(end["visual.transformer.resblocks.0.mlp.c_fc.weight"],
                       s0["visual.transformer.resblocks.0.mlp.c_fc.weight"])
    assert not torch.equal(end["visual.transformer.resblocks.3.mlp.c_fc.weight"],
                           s0["visual.transformer.resblocks.3.mlp.c_fc.weight"])


def test_trainable_layers_0_freezes_both_towers_but_not_the_logit_scale():
    from tracer_core.models import apply_layer_freezing

    model, _ = build_model(load_preset("flyp", FAST).model)
    apply_layer_freezing(model.clip, trainable_layers=0)          # spec §6: both towers entirely
    assert [n for n, p in model.clip.named_parameters() if p.requires_grad] == ["logit_scale"]
    apply_layer_freezing(model.clip, trainable_layers=1)          # last block of each tower + embeddings, LNs
    trainable = {n for n, p in model.clip.named_parameters() if p.requires_grad}
    assert {"visual.proj", "text_projection", "token_embedding.weight", "logit_scale"} <= trainable
    assert not any(n.startswith(("visual.transformer.resblocks.0.", "transformer.resblocks.0.")) for n in trainable)


def test_tempered_teacher_statistics_are_logged_when_tau_is_not_1():
    rec = Recorder()
    run(load_preset("carot", FAST + ["train.steps=3", "loss.distill_temperature=2.0"]), rec)   # basic SD path
    scalars = rec.steps[2][1]
    # §5.1: the same statistics on Z_T / tau_d, prefix post_temp_; tau = 2 flattens the teacher's rows
    assert scalars[("post_temp_teacher_avg_entropy", "img")] > scalars[("teacher_avg_entropy", "img")]
    assert ("post_temp_teacher_student_kl", "combined") in scalars
    rec1 = Recorder()
    run(load_preset("carot", FAST + ["train.steps=3"]), rec1)
    assert not any(name.startswith("post_temp_") for name, _ in rec1.steps[2][1])


def test_bad_checkpoints_give_clear_errors(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.safetensors.*corrupt"):
        build_model(load_preset("flyp", [f"model.pretrained={bad}"]).model)
    other = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, other)
    with pytest.raises(CheckpointError, match="other.pt.*does not match"):
        build_model(load_preset("flyp", [f"model.pretrained={other}"]).model)
    with pytest.raises(CheckpointError, match="not found"):
        build_model(load_preset("flyp", [f"model.pretrained={tmp_path / 'missing.pt'}"]).model)
