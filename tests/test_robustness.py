"""FGSM / PGD (L-inf, [0, 1] image range) against the zero-shot head of the embedded tiny CLIP."""
import pytest
import torch

from tracer_core.config import load_preset
from tracer_core.data import load_dataset
from tracer_core.models import build_model
from tracer_core.models.zeroshot import class_text_embeddings
from tracer_core.analysis.attacks import fgsm, pgd, robustness_eval
from tracer_core.analysis.zeroshot import zero_shot_logits_fn


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model, tok = build_model(load_preset("tracer").model)
    data = load_dataset("mnist", split="test", image_size=model.image_size, max_samples=48)
    return model, tok, data


def test_eps_zero_equals_clean_accuracy_exactly(setup):
    model, tok, data = setup
    res = robustness_eval(model, tok, data, eps=0.0, steps=2, max_samples=48, batch_size=24, random_start=True)
    assert res["n"] == 48 and 0 < res["clean_accuracy"] < 1
    assert res["fgsm_accuracy"] == res["clean_accuracy"] and res["pgd_accuracy"] == res["clean_accuracy"]
    assert res["fgsm_success_rate"] == 0.0 and res["pgd_success_rate"] == 0.0


def test_attacks_never_raise_accuracy_and_a_larger_eps_hurts_more(setup):
    model, tok, data = setup
    small = robustness_eval(model, tok, data, eps=4 / 255, steps=3, max_samples=48)
    big = robustness_eval(model, tok, data, eps=12 / 255, steps=3, max_samples=48)
    for res in (small, big):
        assert res["fgsm_accuracy"] <= res["clean_accuracy"] and res["pgd_accuracy"] <= res["clean_accuracy"]
    assert big["clean_accuracy"] == small["clean_accuracy"]
    assert big["pgd_accuracy"] < small["pgd_accuracy"] <= small["clean_accuracy"]
    assert big["pgd_accuracy"] < 0.5 * big["clean_accuracy"]          # the attack really bites
    assert model.training                                                 # mode restored


def test_perturbations_respect_the_eps_ball_and_the_image_range(setup):
    model, tok, data = setup
    x, y = data.images[:16], data.labels[:16]
    fn = zero_shot_logits_fn(model.eval(), class_text_embeddings(model, tok, data.classnames, data.templates))
    eps = 4 / 255
    gen = torch.Generator().manual_seed(0)
    x_pgd = pgd(fn, x, y, eps=eps, step_size=1 / 255, steps=5, random_start=True, generator=gen)
    x_fgsm = fgsm(fn, x, y, eps=eps)
    model.train()
    for adv in (x_pgd, x_fgsm):
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert (x_pgd - x).abs().max() > 0.9 * eps                       # it moved to the ball's surface somewhere
    inside = (x > eps) & (x < 1 - eps)                               # FGSM is a full eps step where not clipped
    moved = (x_fgsm - x).abs()[inside]
    assert torch.allclose(moved[moved > 0], torch.full_like(moved[moved > 0], eps), atol=1e-6)


def test_unknown_attack_is_rejected(setup):
    model, tok, data = setup
    with pytest.raises(ValueError, match="unknown attack"):
        robustness_eval(model, tok, data, attacks=("cw",), max_samples=4)
