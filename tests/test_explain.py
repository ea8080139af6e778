"""Attributions of the zero-shot similarity (captum) and loading the models of a run checkpoint."""
import pytest
import torch

from tracer_core.config import load_preset
from tracer_core.data import load_dataset
from tracer_core.analysis.attributions import GradCamTap, attribute, normalise_maps
from tracer_core.analysis.checkpoints import load_checkpoint_bundle, load_models_from_checkpoint
from tracer_core.analysis.zeroshot import zero_shot_logits_fn
from tracer_core.models import build_model
from tracer_core.models.zeroshot import class_text_embeddings
from tracer_core.training import run


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model, tok = build_model(load_preset("tracer").model)          # the embedded pretrained tiny CLIP
    data = load_dataset("mnist", split="test", image_size=model.image_size, max_samples=10)
    return model, tok, data


def _score(model, tok, data, x, target):
    fwd = zero_shot_logits_fn(model.eval(), class_text_embeddings(model, tok, data.classnames, data.templates))
    with torch.no_grad():
        return fwd(x)[torch.arange(x.shape[0]), target]


def test_every_method_gives_an_image_shaped_map(setup):
    model, tok, data = setup
    x = data.images[:2]
    for method in ("integrated_gradients", "saliency", "occlusion", "gradcam"):
        att = attribute(model, tok, x, data.classnames, data.templates, target=3, method=method, n_steps=8)
        assert att.shape == (2, 28, 28) and torch.isfinite(att).all(), method
    assert model.training                                    # mode restored after the call
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute(model, tok, x, data.classnames, data.templates, target=3, method="rollout")


def test_integrated_gradients_is_complete(setup):
    model, tok, data = setup
    x, target = data.images[:3], data.labels[:3]
    att = attribute(model, tok, x, data.classnames, data.templates, target=target, method="ig", n_steps=32)
    gap = _score(model, tok, data, x, target) - _score(model, tok, data, torch.zeros_like(x), target)
    assert (gap.abs() > 0.1).all()                           # a non-trivial f(x) - f(baseline)
    assert torch.allclose(att.sum(dim=(1, 2)), gap, rtol=0.05, atol=0.0)


def test_saliency_and_occlusion_are_what_they_claim(setup):
    model, tok, data = setup
    x = data.images[:2]
    sal = attribute(model, tok, x, data.classnames, data.templates, target=5, method="saliency")
    xg = x.clone().requires_grad_(True)
    emb = class_text_embeddings(model, tok, data.classnames, data.templates)
    grad, = torch.autograd.grad(zero_shot_logits_fn(model.eval(), emb)(xg)[:, 5].sum(), xg)
    model.train()
    assert torch.allclose(sal, grad.abs().amax(dim=1), atol=1e-5)
    occ = attribute(model, tok, x, data.classnames, data.templates, target=5, method="occlusion")
    hidden = x.clone()
    hidden[:, :, 8:12, 12:16] = 0.0                          # one 4x4 patch of the 7x7 grid
    drop = _score(model, tok, data, x, torch.tensor([5, 5])) - _score(model, tok, data, hidden, torch.tensor([5, 5]))
    model.train()
    assert torch.allclose(occ[:, 9, 13], drop, atol=1e-4)
    assert occ.abs().amax() > 0


def test_gradcam_penultimate_block_is_informative_last_block_is_zero(setup):
    model, tok, data = setup
    x = data.images[:2]
    blocks = model.clip.visual.transformer.resblocks
    cam = attribute(model, tok, x, data.classnames, data.templates, target=data.labels[:2], method="gradcam")
    assert cam.abs().amax() > 0 and (cam >= 0).all()
    # CLS pooling: the last block's patch tokens never reach the output, so its Grad-CAM is exactly zero
    last = attribute(model, tok, x, data.classnames, data.templates, target=data.labels[:2], method="gradcam",
                     layer=-1)
    assert last.abs().amax() == 0.0
    assert not any(isinstance(b, GradCamTap) for b in blocks)            # the tap is always removed
    norm = normalise_maps(cam)
    assert norm.amin() == 0.0 and norm.flatten(1).amax(1).eq(1.0).all()
    assert normalise_maps(last).abs().amax() == 0.0


def test_models_from_a_run_checkpoint(tmp_path, setup):
    fast = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]',
            "data.batch_size=16", "data.max_eval_samples=32", "train.threads=1", "train.similarity_probe=0"]
    cfg = load_preset("tracer", fast + ["train.steps=2", "optim.lr=1e-3"])
    summary = run(cfg, output_dir=tmp_path)
    from safetensors.torch import load_file
    raw = load_file(summary.checkpoint)                      # read independently of the loader under test
    rng = torch.get_rng_state()
    models = load_models_from_checkpoint(summary.checkpoint)
    assert torch.equal(torch.get_rng_state(), rng)
    assert set(models) == {"pretrained", "student", "teacher"}
    key = "visual.transformer.resblocks.3.mlp.c_fc.weight"
    assert torch.equal(models["student"].clip.state_dict()[key], raw[f"student/{key}"])
    assert torch.equal(models["teacher"].state_dict()[f"clip.{key}"], raw[f"teacher/module/clip.{key}"])
    torch.manual_seed(cfg.train.seed)                        # the run's random init = its "pretrained" model
    init, _ = build_model(cfg.model)
    assert torch.equal(models["pretrained"].clip.state_dict()[key], init.clip.state_dict()[key])
    assert not torch.equal(models["pretrained"].clip.state_dict()[key], raw[f"student/{key}"])
    bundle = load_checkpoint_bundle(summary.checkpoint)
    data = load_dataset("synthetic", split="test", image_size=28, max_samples=4)
    att = attribute(bundle["teacher"], bundle["tokenizer"], data.images, data.classnames, data.templates,
                    target=0, method="gradcam")
    assert att.shape == (4, 28, 28) and bundle["step"] == 2
