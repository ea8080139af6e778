"""The real-model path GPU users take, on small local stand-ins (no network here).

* an open_clip architecture by name (ViT-S-32-alt, 45 M parameters, 224 px) fine-tuned with a WMA teacher on an
  image folder, its checkpoint reloaded through ``model.pretrained=<path>``;
* an open_clip pretrained tag (RN50-quickgelu ``cc12m``) read from a Hugging Face cache folder laid out as a
  download would leave it, with weights we wrote there ourselves;
* wrong names, tags and missing weights give errors that say what to do.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from tracer_core.config import ModelConfig, load_preset
from tracer_core.models import CheckpointError, build_model
from tracer_core.training import Hooks, run
from tracer_core.training.checkpoint import load_checkpoint


def _image_folder(root, n_per_class=6):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, colour in (("red square", (200, 30, 30)), ("blue square", (30, 30, 200))):
            for i in range(n_per_class):
                arr = rng.integers(0, 40, (48, 48, 3), dtype=np.uint8)
                arr[12:36, 12:36] = colour
                (root / split / c).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


class Steps(Hooks):
    def __init__(self):
        self.steps, self.ckpts = [], []

    def on_step(self, step, scalars):
        self.steps.append(dict(scalars))

    def on_checkpoint(self, step, path):
        self.ckpts.append(path)


def test_open_clip_architecture_fine_tunes_on_an_image_folder_and_reloads(tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    sets = ["model.name=ViT-S-32-alt", "model.pretrained=none", "data.train_set=imagefolder",
            f"data.path={folder}", 'data.eval_sets=["imagefolder"]', "data.batch_size=4", "data.eval_batch_size=8",
            "train.steps=2", "train.threads=2", "train.similarity_probe=4"]
    cfg = load_preset("tracer", sets)
    rec = Steps()
    summary = run(cfg, rec, output_dir=tmp_path / "out")
    assert summary.status == "done" and summary.steps == 2
    assert ("teacher_student_kl", "combined") in rec.steps[1]               # the WMA teacher ran on ViT-S-32
    assert 0.0 <= summary.final_eval["imagefolder"]["accuracy"] <= 1.0
    # the run's checkpoint is a local checkpoint for the same architecture: it loads strictly, same weights
    model, _ = build_model(ModelConfig(name="ViT-S-32-alt", pretrained=rec.ckpts[-1]))
    saved = load_checkpoint(rec.ckpts[-1])["student"]
    assert model.image_size == 224
    assert all(torch.equal(model.clip.state_dict()[k], v) for k, v in saved.items())
    with pytest.raises(CheckpointError, match="does not match the model architecture"):
        build_model(ModelConfig(name="ViT-S-16-alt", pretrained=rec.ckpts[-1]))


def _hub_cache(cache, repo="timm/resnet50_clip.cc12m", sd=None):
    folder = cache / f"models--{repo.replace('/', '--')}"
    rev = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    (folder / "snapshots" / rev).mkdir(parents=True)
    torch.save(sd, folder / "snapshots" / rev / "open_clip_pytorch_model.bin")


def test_pretrained_tag_is_read_from_the_local_cache(tmp_path, monkeypatch):
    import open_clip

    torch.manual_seed(1)
    weights = {k: v.half() for k, v in open_clip.create_model("RN50-quickgelu").state_dict().items()}
    _hub_cache(tmp_path / "hub", sd=weights)
    model, tok = build_model(ModelConfig(name="RN50-quickgelu", pretrained="cc12m", cache_dir=str(tmp_path / "hub")))
    own = model.clip.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in weights.items())
    feats = model.encode_image(torch.rand(2, 3, model.image_size, model.image_size))
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)
    # another tag of the same model is not in the cache: with the hub offline (HF_HUB_OFFLINE=1) a clear error
    import huggingface_hub.constants as hub
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=r"could not load pretrained weights 'yfcc15m'.*model.cache_dir="):
        build_model(ModelConfig(name="RN50-quickgelu", pretrained="yfcc15m", cache_dir=str(tmp_path / "hub")))


def test_wrong_model_names_and_tags_say_what_exists():
    with pytest.raises(CheckpointError, match="unknown model 'ViT-Q-99'.*open_clip.list_models"):
        build_model(ModelConfig(name="ViT-Q-99", pretrained="none"))
    with pytest.raises(CheckpointError, match="unknown pretrained tag 'laion9000' for 'RN50'.*openai"):
        build_model(ModelConfig(name="RN50", pretrained="laion9000"))


def test_flyp_trains_on_a_caption_csv_with_its_own_captions(tmp_path):
    """FLYP's own data format: a table of (filepath, title, label); captions come from the table, not templates."""
    import csv

    folder = _image_folder(tmp_path / "imgs", n_per_class=4)
    rows = [(str(p.relative_to(tmp_path)), f"a photo of a {p.parent.name}, number {i}", int("blue" in p.parent.name))
            for i, p in enumerate(sorted(folder.glob("train/*/*.png")))]
    with open(tmp_path / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([("filepath", "title", "label"), *rows])
    (tmp_path / "classnames.txt").write_text("red square\nblue square\n")
    cfg = load_preset("flyp", ["model.pretrained=none", "data.train_set=csv", f"data.path={tmp_path / 'train.csv'}",
                               'data.eval_sets=["csv"]', "data.batch_size=4", "train.steps=3", "train.threads=1",
                               "train.similarity_probe=0"])
    rec = Steps()
    summary = run(cfg, rec)
    assert summary.status == "done" and summary.final_eval["csv"]["accuracy"] >= 0
    assert all(torch.isfinite(torch.tensor(s[("loss", "clip_loss")])) for s in rec.steps)
    # the batches' captions are the table's rows (FLYP), not class-prompt templates
    from tracer_core.data import load_dataset
    from tracer_core.training.batches import batch_iterator
    _, tok = build_model(cfg.model)
    ds = load_dataset("csv", split="train", image_size=28, path=str(tmp_path / "train.csv"))
    table = {tuple(t.tolist()) for t in tok([title for _, title, _ in rows])}
    batch = next(batch_iterator(ds, tok, 4, seed=0, device="cpu"))
    assert all(tuple(t.tolist()) in table for t in batch.tokens)
