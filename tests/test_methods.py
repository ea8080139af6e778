"""Every registered method: a short real training (contract), its own terms, and that each regulariser
changes the gradient on the same batch (not a silent no-op). Closed forms where they exist.

Tiny CLIP, random init, synthetic data, CPU, one thread (the FAST overrides of test_training.py).
"""
import math

import pytest
import torch

from tracer_core.analysis.wise import wise_curve
from tracer_core.config import METHODS, ConfigError, MethodParamsConfig, list_presets, load_preset, preset_description
from tracer_core.losses import gram_volume, total_loss
from tracer_core.methods import list_methods
from tracer_core.methods.lowrank import assign_ranks, awp_perturbation, merged_weights
from tracer_core.methods.simulated_ood import simulate_ood
from tracer_core.methods.wiseft import wise_ft_interpolate
from tracer_core.models import build_model
from tracer_core.training import Hooks, run
from tracer_core.training.evaluate import evaluate_model
from tracer_core.training.loop import _train_step
from tracer_core.training.schedule import cosine_lr
from tracer_core.training.setup import build_parts

FAST = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]',
        "data.batch_size=16", "data.max_eval_samples=64", "train.threads=1"]

# the terms each method must log (weighted "*_loss" and, for regularisers, the unweighted value)
TERMS = {"ft": {"ce_loss"}, "lp": {"ce_loss"}, "lpft": {"ce_loss"}, "wiseft": {"ce_loss"}, "flyp": {"clip_loss"},
         "l2sp": {"ce_loss", "l2sp_loss", "l2sp"}, "carot": {"clip_loss", "distill_loss", "orth_loss"},
         "tracer": {"clip_loss", "crd_loss", "fd_loss", "icl_loss", "cross_kd_loss", "fd"},
         "ft2b": {"ce_loss", "fsr_loss", "consistency_loss", "fsr", "consistency"},
         "grace": {"ce_loss", "lar_awp_loss", "gram_volume_loss", "lar_awp", "gram_volume"}, "zeroshot": set()}


class Recorder(Hooks):
    def __init__(self):
        self.steps, self.evals = [], []

    def on_step(self, step, scalars):
        self.steps.append(dict(scalars))

    def on_eval(self, report):
        self.evals.append(report)


def _parts(preset, *extra):
    parts = build_parts(load_preset(preset, FAST + list(extra)))
    return parts, next(parts.batches)


def _grad(loss, param):
    g = torch.autograd.grad(loss, param, retain_graph=True, allow_unused=True)[0]
    return torch.zeros_like(param) if g is None else g


# -- contract: registry, presets, a short real run ------------------------------------------------

def test_registry_config_and_presets_agree():
    assert set(list_methods()) == set(METHODS) == set(TERMS)
    for name in METHODS:   # one preset per method, named after it, with a description
        assert name in list_presets() and load_preset(name).method == name and preset_description(name)
    assert "RECONSTRUCTION" in preset_description("ft2b")
    for name in ("flyp", "ft", "carot", "tracer", "tracer_ema", "zeroshot"):   # old presets unchanged
        assert load_preset(name).method_params == MethodParamsConfig()


@pytest.mark.parametrize("method", sorted(TERMS))
def test_every_method_trains_and_logs_its_terms(method):
    rec = Recorder()
    summary = run(load_preset(method, FAST + ["train.steps=2", "train.eval_at_start=false"]), rec)
    assert summary.status == "done" and 0 <= summary.final_eval["synthetic"]["accuracy"] <= 1
    assert len(rec.steps) == (0 if method == "zeroshot" else 2)
    for scalars in rec.steps[1:]:          # step 1: teacher terms exist from step 1 on
        losses = {ctx: v for (name, ctx), v in scalars.items() if name == "loss"}
        assert TERMS[method] <= set(losses), sorted(losses)
        assert all(math.isfinite(v) for v in losses.values())
        assert losses["total"] == pytest.approx(sum(v for k, v in losses.items() if k.endswith("_loss")), rel=1e-5)


def test_method_params_validation_names_the_key():
    for override, fragment in [("method_params.lp_fraction=1.5", "method_params.lp_fraction must be in [0, 1]"),
                               ('method_params.ft2b_ops=["bogus"]', "method_params.ft2b_ops"),
                               ("method_params.grace_lora_rank=0", "method_params.grace_lora_rank must be >= 1"),
                               ("method_params.wise_alpha=-0.1", "method_params.wise_alpha"),
                               ("method_params.grace_lora_rnk=1", "did you mean method_params.grace_lora_rank")]:
        with pytest.raises(ConfigError) as exc:
            load_preset("grace", [override])
        assert fragment in str(exc.value)


# -- L2-SP: closed-form penalty and gradient --------------------------------------------------------

def test_l2sp_penalty_and_its_gradient_are_the_closed_form():
    parts, batch = _parts("l2sp", "loss.lambda_l2sp=0.5")
    params = parts.method.trainable_parameters()
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(p.shape, generator=gen) * 1e-2 for p in params]
    with torch.no_grad():
        for p, d in zip(params, deltas):
            p.add_(d)
    out = parts.method.step(batch, 0, None)
    expected = sum(float(d.double().pow(2).sum()) for d in deltas)
    assert float(out.terms["l2sp"]) == pytest.approx(expected, rel=1e-4)
    assert float(out.terms["l2sp_loss"].detach()) == pytest.approx(0.5 * expected, rel=1e-4)
    p, d = params[-1], deltas[-1]                                # the head
    diff = _grad(total_loss(out.terms), p) - _grad(out.terms["ce_loss"], p)
    torch.testing.assert_close(diff, 2 * 0.5 * d, rtol=1e-4, atol=1e-7)


# -- LP / LP-FT: what trains, at which lr ---------------------------------------------------------

def test_lp_trains_the_head_only_at_the_scaled_lr():
    parts, _ = _parts("lp", "train.steps=4", "method_params.lp_lr_scale=7")
    tower0 = parts.student.clip.visual.conv1.weight.detach().clone()
    head0 = parts.method.head.weight.detach().clone()
    _train_step(parts, 0, parts.cfg)
    assert parts.optimizer.param_groups[0]["lr"] == pytest.approx(7 * cosine_lr(0, 1e-4, 30, 4))
    assert torch.equal(parts.student.clip.visual.conv1.weight, tower0)
    assert not torch.equal(parts.method.head.weight, head0)


def test_lpft_switches_from_probe_to_full_finetuning():
    parts, batch = _parts("lpft", "train.steps=4", "method_params.lp_fraction=0.5", "method_params.lp_lr_scale=7")
    conv = parts.student.clip.visual.conv1.weight
    assert parts.method.lp_steps == 2 and parts.method.lr_scale(1) == 7 and parts.method.lr_scale(2) == 1
    for step, tower_grad in ((0, False), (2, True)):
        out = parts.method.step(batch, step, None)
        parts.optimizer.zero_grad(set_to_none=True)
        total_loss(out.terms).backward()
        assert (conv.grad is not None) == tower_grad and parts.method.head.weight.grad is not None
        assert out.stats[("lp_stage", "")] == float(not tower_grad)


# -- WiSE-FT: exact endpoints, the method's finalize, the curve ----------------------------------

def test_wise_ft_interpolate_endpoints_are_exact():
    gen = torch.Generator().manual_seed(0)
    zs = {"w": torch.randn(5, 3, generator=gen), "n": torch.tensor([1]), "only_zs": torch.ones(2), "s": torch.ones(3)}
    ft = {"w": torch.randn(5, 3, generator=gen), "n": torch.tensor([4]), "only_ft": torch.zeros(2), "s": torch.ones(4)}
    for alpha, ref in ((0.0, zs), (1.0, ft)):
        out = wise_ft_interpolate(zs, ft, alpha)
        assert torch.equal(out["w"], ref["w"])
    mid = wise_ft_interpolate(zs, ft, 0.25)
    torch.testing.assert_close(mid["w"], 0.75 * zs["w"] + 0.25 * ft["w"])
    assert mid["n"].item() == 4 and torch.equal(mid["s"], ft["s"])          # ints / shape mismatch: fine-tuned
    assert torch.equal(mid["only_zs"], zs["only_zs"]) and torch.equal(mid["only_ft"], ft["only_ft"])
    with pytest.raises(ValueError, match="alpha"):
        wise_ft_interpolate(zs, ft, 1.5)


def test_wiseft_finalize_and_curve_hit_pretrained_and_finetuned_exactly():
    parts, _ = _parts("wiseft", "train.steps=3", "optim.lr=1e-3", "optim.warmup_steps=0")
    m = parts.method
    for s in range(2):
        _train_step(parts, s, parts.cfg)
    ft_state = {k: v.clone() for k, v in parts.student.clip.state_dict().items()}
    ft_head = m.head.weight.detach().clone()
    torch.manual_seed(parts.cfg.train.seed)
    pretrained, _ = build_model(parts.cfg.model)                            # rebuilt theta_0 (same seed)
    ds = parts.eval_sets["synthetic"]
    rows = wise_curve(parts.student, parts.tokenizer, m.zs_state, ft_state, {"synthetic": ds}, [0.0, 1.0],
                      head_zs=m.zs_head["weight"], head_ft=ft_head, head_classnames=ds.classnames, batch_size=64)
    zs_eval = evaluate_model(pretrained, parts.tokenizer, ds, 64, "cpu")["metrics"]
    ft_eval = evaluate_model(parts.student, parts.tokenizer, ds, 64, "cpu", head=m.head)["metrics"]
    assert rows[0]["accuracy"] == zs_eval["accuracy"] and rows[0]["nll"] == pytest.approx(zs_eval["nll"], rel=1e-5)
    assert rows[1]["accuracy"] == ft_eval["accuracy"] and rows[1]["nll"] == pytest.approx(ft_eval["nll"], rel=1e-5)
    assert all(torch.equal(v, ft_state[k]) for k, v in parts.student.clip.state_dict().items())   # restored
    m.cfg = parts.cfg.replace(**{"method_params.wise_alpha": 1.0})
    m.finalize()
    assert all(torch.equal(v, ft_state[k]) for k, v in parts.student.clip.state_dict().items())
    m.cfg = parts.cfg.replace(**{"method_params.wise_alpha": 0.0})
    m.finalize()
    state = parts.student.clip.state_dict()
    changed = [k for k, v in pretrained.clip.state_dict().items() if not torch.equal(v, ft_state[k])]
    assert changed and all(torch.equal(v, state[k]) for k, v in pretrained.clip.state_dict().items())
    assert torch.equal(m.head.weight, m.zs_head["weight"])


def test_wiseft_run_at_alpha_zero_evaluates_the_zero_shot_model():
    rec = Recorder()
    run(load_preset("wiseft", FAST + ["train.steps=2", "method_params.wise_alpha=0"]), rec)
    assert rec.evals[0].metrics == rec.evals[-1].metrics and rec.evals[-1].step == 2


# -- FT2B: simulated views and both regularisers move the gradient ----------------------------------

def test_ft2b_simulated_views_stay_images_and_differ():
    x = torch.rand(8, 3, 28, 28)
    torch.manual_seed(0)
    y = simulate_ood(x, ("affine", "posterize", "solarize", "invert", "colour", "noise", "blur"), 2, 1.0, 0.25)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().mean()) > 0.01


def test_ft2b_terms_are_finite_and_change_the_gradient():
    parts, batch = _parts("ft2b", "optim.lr=1e-3", "optim.warmup_steps=0")
    for s in range(2):                  # move away from theta_0: at theta_0 the function-space KL is 0
        _train_step(parts, s, parts.cfg)
    out = parts.method.step(batch, 2, None)
    p = parts.student.clip.visual.transformer.resblocks[0].mlp.c_fc.weight
    g_ce = _grad(out.terms["ce_loss"], p)
    for term in ("fsr_loss", "consistency_loss"):
        assert math.isfinite(float(out.terms[term].detach())) and float(out.terms[term].detach()) > 0
        assert float(_grad(out.terms[term], p).norm()) > 1e-3 * float(g_ce.norm())
    assert not torch.allclose(_grad(total_loss(out.terms), p), g_ce)


# -- GRACE: terms, PGD, AWP, ranks, Gram volume, merge --------------------------------------------

def test_grace_terms_change_the_lora_gradient_and_pgd_ascends():
    parts, batch = _parts("grace", "method_params.grace_pgd_steps=5")
    m = parts.method
    assert parts.method.trainable_parameters() == list(m.lora.parameters())
    out = m.step(batch, 0, None)
    b = m.lora.B[0]                           # B = 0 at start, so the gradient reaches B (not A) first
    g_ce = _grad(out.terms["ce_loss"], b)
    for term in ("lar_awp_loss", "gram_volume_loss"):
        assert math.isfinite(float(out.terms[term].detach())) and float(_grad(out.terms[term], b).norm()) > 0
    assert not torch.allclose(_grad(total_loss(out.terms), b), g_ce)
    assert sorted(set(m.ranks)) == [0, 1, 2]                              # curvature bands at step 0
    w = {k: v.detach() for k, v in merged_weights(m.base, m.units, m.lora).items()}
    x_adv = m.pgd(batch.images, batch.labels, w)
    eps = parts.cfg.method_params.grace_pgd_eps
    assert float((x_adv - batch.images).abs().max()) <= eps + 1e-6 and 0 <= float(x_adv.min())
    assert float(m.ce(x_adv, batch.labels, w)) > float(m.ce(batch.images, batch.labels, w))


def test_awp_reaches_the_rho_ball_only_for_ranked_units():
    parts, batch = _parts("grace")
    m = parts.method
    w = {k: v.detach() for k, v in merged_weights(m.base, m.units, m.lora).items()}
    ranks = [2, 0] + [1] * (len(m.units) - 2)
    delta = awp_perturbation(lambda ww: m.ce(batch.images, batch.labels, ww), w, m.units, ranks, 2, m.radii, 1)
    for u, r, rho in zip(m.units, ranks, m.radii):
        size = float(delta[u.key][u.start:u.stop].norm())
        assert size == pytest.approx(rho, rel=1e-3) if r else size == 0.0


def test_rank_bands_and_gram_volume_closed_form():
    ranks = assign_ranks(torch.arange(10.0), r_max=4, percentile=80)
    assert ranks.tolist() == [0, 0, 2, 2, 2, 2, 2, 2, 4, 4]
    f = torch.nn.functional.normalize(torch.randn(3, 6, 16, dtype=torch.float64), dim=-1)    # 3 views, B=6, d=16
    gram = torch.einsum("abd,cbd->bac", f, f) + 1e-3 * torch.eye(3, dtype=torch.float64)    # (B, 3, 3)
    torch.testing.assert_close(gram_volume(f[0], f[1], f[2], 1e-3), torch.linalg.det(gram).clamp_min(0).add(1e-12).sqrt().mean())
    assert float(gram_volume(f[0], f[0], f[0], 0.0)) < 1e-5                   # collinear: zero volume


def test_grace_merges_lora_into_the_student_after_each_step():
    parts, batch = _parts("grace", "optim.lr=1e-2", "optim.warmup_steps=0", "method_params.grace_pgd_steps=1")
    m, vis = parts.method, parts.student.clip.visual
    mlp0 = vis.transformer.resblocks[0].mlp.c_fc.weight.detach().clone()
    for s in range(2):
        _train_step(parts, s, parts.cfg)
    params = dict(vis.named_parameters())
    merged = merged_weights(m.base, m.units, m.lora)
    assert all(torch.equal(params[k], v) for k, v in merged.items())
    assert not torch.equal(params[m.units[0].key], m.base[m.units[0].key])     # adapted
    assert torch.equal(vis.transformer.resblocks[0].mlp.c_fc.weight, mlp0)     # backbone frozen
    torch.testing.assert_close(parts.student.encode_image(batch.images), m.features(batch.images, merged))
