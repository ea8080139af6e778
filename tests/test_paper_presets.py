"""The paper-scale presets (ViT-B/16 on ImageNet and its shifts): values from the spec, T from the epochs."""
import pytest

from tracer_core.config import ConfigError, load_preset
from tracer_core.training.schedule import steps_for_epochs

PAPER = ("flyp_vitb16_imagenet", "carot_vitb16_imagenet", "tracer_vitb16_imagenet", "ft_vitb16_imagenet")
SHIFTS = ("imagenet", "imagenet_v2", "imagenet_r", "imagenet_a", "imagenet_sketch", "objectnet")


@pytest.mark.parametrize("name", PAPER)
def test_paper_preset_loads_with_the_spec_protocol(name):
    cfg = load_preset(name)
    assert cfg.method == name.split("_")[0]
    assert (cfg.model.name, cfg.model.pretrained) == ("ViT-B-16", "openai")
    assert cfg.data.batch_size == 512 and cfg.data.train_set == "imagenet_train"
    assert set(cfg.data.eval_sets) == set(SHIFTS)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.warmup_steps, cfg.optim.max_grad_norm) == (1e-5, 0.1, 500, 0)
    assert cfg.train.steps == 0 and cfg.train.epochs == 10        # T from the train set at setup
    assert cfg.train.eval_every == steps_for_epochs(1, 1_281_167, 512)   # once per epoch, as the reference


def test_paper_method_values():
    carot = load_preset("carot_vitb16_imagenet")
    assert carot.teacher.kind == "ema" and carot.teacher.update_every == 500
    assert (carot.teacher.momentum_start, carot.teacher.momentum_end, carot.teacher.momentum_warmup) == (0.05, 0.9, 0.2)
    assert (carot.loss.lambda_sd, carot.loss.lambda_f, carot.loss.lambda_oc) == (1.5, 0.05, 0.2)
    assert not carot.loss.any_alpha
    tracer = load_preset("tracer_vitb16_imagenet")
    assert tracer.teacher.kind == "wma" and tracer.teacher.beta == 0.5 and tracer.teacher.update_every == 1
    assert (tracer.loss.alpha_crd, tracer.loss.alpha_fd, tracer.loss.alpha_icl, tracer.loss.alpha_cross_kd) == (1, 2000, 1, 1)
    assert (tracer.loss.lambda_sd, tracer.loss.lambda_f, tracer.loss.lambda_oc) == (0.9, 0.05, 0.0)
    # the loss/teacher values equal the short presets' (one protocol, two scales)
    assert tracer.loss == load_preset("tracer").loss and tracer.teacher == load_preset("tracer").teacher
    for name in ("flyp_vitb16_imagenet", "ft_vitb16_imagenet"):
        assert load_preset(name).teacher.kind == "none"


def test_epochs_to_steps_matches_the_reference():
    assert steps_for_epochs(10, 1_281_167, 512) == 25_030 == 10 * 2503
    assert steps_for_epochs(1, 512, 512) == 1 and steps_for_epochs(1, 513, 512) == 2   # drop_last=False
    with pytest.raises(ValueError):
        steps_for_epochs(0, 100, 10)


def test_steps_zero_needs_epochs():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_preset("flyp", ["train.steps=0"])
    assert load_preset("flyp_vitb16_imagenet", ["train.steps=100"]).train.steps == 100   # explicit T wins


def test_setup_turns_the_paper_epochs_into_25030_steps():
    from types import SimpleNamespace

    from tracer_core.training.setup import resolve_steps
    # a TSV-shaped set: 2 rows (templates) per image, the epoch counts the 1,281,167 distinct images
    paths = [f"train/n{i // 1300:08d}/{i}.JPEG" for i in range(1_281_167)]
    tsv = SimpleNamespace(paths=paths + paths)
    cfg = resolve_steps(load_preset("tracer_vitb16_imagenet"), tsv)
    assert cfg.train.steps == 25_030 and cfg.train.epochs == 10
