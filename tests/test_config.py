"""Config as data: presets, dotted overrides, strict rejection of unknown keys and wrong types."""
import math

import pytest

from tracer_core.config import (ConfigError, RunConfig, apply_overrides, list_presets, load_preset)
from tracer_core.training.schedule import cosine_lr, grad_clip_norm


def test_required_presets_exist_and_load():
    for name in ("flyp", "carot", "tracer", "tracer_ema", "ft"):
        assert name in list_presets()
        cfg = load_preset(name)
        assert cfg.preset == name


def test_tracer_preset_is_the_paper_configuration():
    cfg = load_preset("tracer")
    assert cfg.teacher.kind == "wma" and cfg.teacher.beta == 0.5 and cfg.teacher.update_every == 1
    assert (cfg.loss.lambda_sd, cfg.loss.lambda_f, cfg.loss.lambda_oc) == (0.9, 0.05, 0.0)
    assert (cfg.loss.alpha_crd, cfg.loss.alpha_fd, cfg.loss.alpha_icl, cfg.loss.alpha_cross_kd) == (1, 2000, 1, 1)
    ema = load_preset("tracer_ema")
    assert ema.teacher.kind == "ema" and ema.teacher.update_every == 1 and ema.loss.lambda_oc == 0.2
    carot = load_preset("carot")
    assert carot.loss.lambda_sd == 1.5 and not carot.loss.any_alpha and carot.loss.lambda_oc == 0.2


def test_overrides_are_typed():
    cfg = load_preset("tracer", ["teacher.beta=0.3", "train.steps=30", "data.eval_sets=mnist,sklearn_digits",
                                 "name=123", "tags=[\"a\", \"b\"]"])
    assert cfg.teacher.beta == 0.3 and cfg.train.steps == 30
    assert cfg.data.eval_sets == ("mnist", "sklearn_digits")
    assert cfg.name == "123" and cfg.tags == ("a", "b")
    assert apply_overrides(cfg, ["optim.lr=1"]).optim.lr == 1.0    # int accepted for a float field


@pytest.mark.parametrize("override, fragment", [
    ("teacher.betta=0.3", "did you mean teacher.beta"),
    ("nosection.x=1", "unknown config"),
    ("train.steps=abc", "train.steps: expected an integer"),
    ("train.steps=1.5", "expected an integer"),
    ("teacher.average_buffers=2", "expected true/false"),
    ("teacher.kind=bogus", "teacher.kind must be one of"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("data.batch_size=1", "batch_size must be >= 2"),
    ("teacher.momentum_end=1.5", "momentum_end must be in [0, 1]"),
    ("steps", "key=value"),
])
def test_bad_overrides_are_rejected_with_a_message(override, fragment):
    with pytest.raises(ConfigError, match=None) as exc:
        load_preset("tracer", [override])
    assert fragment in str(exc.value)


def test_from_dict_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ConfigError, match="unknown config key 'teacher.foo'"):
        RunConfig.from_dict({"teacher": {"foo": 1}})
    cfg = load_preset("carot")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="needs a teacher"):
        RunConfig.from_dict({"loss": {"lambda_sd": 1.0}, "teacher": {"kind": "none"}})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("tracr")


def test_lr_schedule_matches_spec_formulas():
    base, w, t = 1e-5, 500, 25030
    assert cosine_lr(0, base, w, t) == pytest.approx(base / 500)
    assert cosine_lr(499, base, w, t) == pytest.approx(base)                 # end of warm-up: (s+1)/W = 1
    assert cosine_lr(500, base, w, t) == pytest.approx(base)                 # cos(0)
    last = 0.5 * (1 + math.cos(math.pi * (t - 1 - w) / (t - w))) * base
    assert cosine_lr(t - 1, base, w, t) == pytest.approx(last)
    assert cosine_lr(t - 1, base, w, t, min_lr=1e-7) == pytest.approx(last + 1e-7)   # added, not interpolated


def test_grad_clip_schedule_rises_along_a_cosine():
    assert grad_clip_norm(0, 1e-4, 100, 1000) == pytest.approx(1e-4)
    assert grad_clip_norm(999, 1e-4, 100, 1000) == pytest.approx(1e-2)
    assert grad_clip_norm(5, 0.0, 100, 1000) == 0.0
