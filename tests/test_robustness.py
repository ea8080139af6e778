"""FGSM / PGD (L-inf, [0, 1] image range) against the zero-shot head of the embedded tiny CLIP."""
from pathlib import Path

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


# --- ObjectNet through the analysis path: one set head (models.zeroshot.set_head) everywhere -------------------
# A model with known logits: image features are the normalised mean RGB (differentiable, so attacks and
# attributions run through it), text features a fixed table per class name. With the 2 px blue frame cropped,
# image 0 (an alarm clock, red inside) is closest to ImageNet's "digital clock", one of the two classes
# ObjectNet's "alarm clock" pools, while the name "alarm clock" itself is green: max-pooling scores it right,
# a naive head over the 113 ObjectNet names says "backpack". Without the crop the frame pulls it to "banana".
TEXT = {"digital clock": (1.0, 0.0, 0.0), "analog clock": (0.0, 1.0, 0.0), "alarm clock": (0.0, 1.0, 0.0),
        "backpack": (0.8, 0.6, 0.0), "banana": (0.0, 0.0, 1.0)}
NAMES = list(TEXT)


class KnownLogits(torch.nn.Module):
    image_size = 8

    def __init__(self):
        super().__init__()
        self.table = torch.nn.functional.normalize(torch.tensor([*TEXT.values(), (-1.0, -1.0, -1.0)]), dim=-1)
        self.s = torch.nn.Parameter(torch.tensor(10.0))

    @property
    def logit_scale(self):
        return self.s

    def encode_image(self, images):                 # (N, 3, H, W) -> (N, 3) unit rows
        return torch.nn.functional.normalize(images.mean(dim=(2, 3)), dim=-1)

    def encode_text(self, tokens):                  # (N, 1) name ids (-1: any other name) -> (N, 3)
        return self.table[tokens[:, 0]]


def known_tokenizer(texts):
    return torch.tensor([[NAMES.index(t) if t in TEXT else -1] for t in texts])


@pytest.fixture(scope="module")
def objectnet(tmp_path_factory):
    import json

    from PIL import Image
    root = tmp_path_factory.mktemp("objectnet")
    clock = torch.zeros(12, 12, 3, dtype=torch.uint8)
    clock[..., 2] = 255                              # blue frame ...
    clock[2:-2, 2:-2] = torch.tensor([255, 0, 0], dtype=torch.uint8)   # ... around a red inside
    for folder, pixels in (("alarm_clock", clock), ("backpack", torch.tensor([204, 153, 0], dtype=torch.uint8)
                                                     .expand(12, 12, 3).contiguous())):
        (root / "images" / folder).mkdir(parents=True)
        Image.fromarray(pixels.numpy()).save(root / "images" / folder / "img0.png")
    (root / "images" / "backpack" / "corrupt.png").write_bytes(b"not a png")     # dropped and counted
    (root / "name_only.txt").write_text("{}\n")
    file = root / "datasets.json"
    file.write_text(json.dumps({"datasets": [{"name": "objectnet", "kind": "imagefolder", "path": "images",
                                              "family": "objectnet", "templates": "name_only.txt"}]}))
    ds = load_dataset("objectnet", split="test", image_size=KnownLogits.image_size, datasets_file=str(file))
    return ds, str(file)


def _accuracy(logits_fn, ds, crop=True):
    from tracer_core.data.files import load_image
    readable = [i for i, p in enumerate(ds.paths) if not p.endswith("corrupt.png")]
    x = torch.stack([load_image(ds.paths[i], 8, ds.crop_border if crop else 0) for i in readable])
    return float((logits_fn(x).argmax(1) == ds.labels[readable]).float().mean())


def test_objectnet_in_the_analysis_path_is_max_pooled_and_cropped_as_in_evaluation(objectnet):
    from tracer_core.analysis.zeroshot import set_logits_fn
    from tracer_core.training.evaluate import evaluate_model
    ds, _ = objectnet
    model = KnownLogits()
    assert ds.labels.tolist() == [0, 1, 1] and ds.crop_border == 2
    naive = zero_shot_logits_fn(model, class_text_embeddings(model, known_tokenizer, ds.classnames, ds.templates))
    pooled = set_logits_fn(model, known_tokenizer, ds)                  # (N, 113) after the max-pool
    assert _accuracy(naive, ds) == 0.5 and _accuracy(pooled, ds) == 1.0 and _accuracy(pooled, ds, crop=False) == 0.5
    trained_eval = evaluate_model(model, known_tokenizer, ds, 8, "cpu")["metrics"]
    assert trained_eval["accuracy"] == 1.0 and trained_eval["skipped_images"] == 1
    res = robustness_eval(model, known_tokenizer, ds, attacks=("fgsm",), eps=0.0, max_samples=8)
    assert res["clean_accuracy"] == res["fgsm_accuracy"] == 1.0 and res["n"] == 2 and res["skipped_images"] == 1


def test_the_pages_api_scores_objectnet_like_evaluation(objectnet):
    """robustness_table and attribution_maps load the run's declared set (its datasets file) and use the set
    head: the alarm clock is predicted from the pooled ImageNet clocks; the page's block comes from one call."""
    from tracer_core import api
    _, file = objectnet
    model = KnownLogits().eval().requires_grad_(False)
    cm = api.CheckpointModels("none.safetensors", {"pretrained": model, "student": model, "teacher": None},
                              known_tokenizer, {"data": {"train_set": "imagenet", "eval_sets": ["objectnet"],
                                                         "datasets_file": file}}, 0)
    table = api.robustness_table(cm, "objectnet", eps=0.0, steps=1, max_samples=8)
    assert table["accuracy"].tolist() == [1.0] * 6 and set(table["n"]) == {2}
    result = api.attribution_maps(cm, "objectnet", 0, methods=("saliency",))
    assert result.predictions["predicted"].tolist() == ["alarm clock"] * 2 and result.maps[("student", "saliency")].shape == (8, 8)
    assert api.eval_set_info(cm, "objectnet")["labels"] == [0, 1, 1]
    opened = api.open_checkpoint(str(Path(file).parent / "missing.safetensors"))
    assert opened.models is None and "Could not load the checkpoint" in opened.error
