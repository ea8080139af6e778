"""The file-image pipeline (data/loader.py): DataLoader workers give the in-process batches, ranks shard them,
unreadable images are skipped and counted, the FLYP TSV trains, and the reference's transforms have the
right geometry. Generated JPEGs only (no downloads)."""
import csv
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from tracer_core.config import load_preset
from tracer_core.data.base import TensorImageSet
from tracer_core.data.files import load_csv, load_image, load_imagefolder
from tracer_core.data.loader import (SkipCount, crop_box, distinct_images, eval_batches, eval_transform,
                                     resolve_workers, train_transform)
from tracer_core.training import Hooks, run
from tracer_core.training.batches import batch_iterator

CLASSES = ("cat", "dog", "fish")
SIZE = 32


def _jpeg(path, seed, size):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(1, 1, 3))
    noise = rng.integers(-40, 40, size=(size[1], size[0], 3))
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)


def _tree(root, per_class=8, corrupt=False):
    """root/<class>/<i>.jpg with varied sizes; optionally one truncated JPEG in the first class."""
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _jpeg(root / name / f"{i:02d}.jpg", 100 * c + i, (40 + 3 * i, 30 + 5 * c))
    if corrupt:
        good = (root / CLASSES[0] / "00.jpg").read_bytes()
        (root / CLASSES[0] / "03.jpg").write_bytes(good[: len(good) // 3])     # truncated mid-scan
    return root


def fake_tokenizer(texts):
    """Deterministic (n, 4) int64 'tokens': length, char sum, first and last char of each caption."""
    return torch.tensor([[len(t), sum(map(ord, t)), ord(t[0]), ord(t[-1])] for t in texts], dtype=torch.long)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_workers_give_the_in_process_batches(tmp_path):
    files = load_imagefolder(str(_tree(tmp_path / "f")), "train", SIZE, None)
    images = torch.stack([load_image(p, SIZE) for p in files.paths])                 # (24, 3, S, S)
    memory = TensorImageSet("mem", images, files.labels, files.classnames, files.templates)
    ref = _take(batch_iterator(memory, fake_tokenizer, 8, seed=5, device="cpu"), 7)    # 2+ epochs of 3 batches
    got = _take(batch_iterator(files, fake_tokenizer, 8, seed=5, device="cpu", num_workers=2, augment=False), 7)
    for r, g in zip(ref, got):
        assert torch.equal(r.labels, g.labels) and torch.equal(r.tokens, g.tokens)
        assert g.images.dtype == torch.float32 and torch.equal(r.images, g.images)
    # the permutation really changes between epochs (the comparison is not of constant batches)
    assert not torch.equal(ref[0].labels, ref[3].labels) or not torch.equal(ref[0].images, ref[3].images)


def test_ranks_get_contiguous_shards_of_the_global_batch_and_workers_do_not_matter(tmp_path):
    files = load_imagefolder(str(_tree(tmp_path / "f")), "train", SIZE, None)
    one = _take(batch_iterator(files, fake_tokenizer, 8, seed=1, device="cpu", num_workers=2), 4)
    ranks = [_take(batch_iterator(files, fake_tokenizer, 8, seed=1, device="cpu", rank=r, world_size=2,
                                  num_workers=0), 4) for r in (0, 1)]
    for b, (r0, r1) in zip(one, zip(*ranks)):
        assert r0.images.shape[0] == r1.images.shape[0] == 4
        assert torch.equal(torch.cat([r0.images, r1.images]), b.images)          # augmentation included
        assert torch.equal(torch.cat([r0.tokens, r1.tokens]), b.tokens)
        assert torch.equal(torch.cat([r0.labels, r1.labels]), b.labels)
    # augmented: a crop of the short-side-resized image, not the centre crop
    plain = _take(batch_iterator(files, fake_tokenizer, 8, seed=1, device="cpu", num_workers=0, augment=False), 1)
    assert torch.equal(plain[0].labels, one[0].labels) and not torch.equal(plain[0].images, one[0].images)


def test_corrupt_jpeg_is_skipped_and_counted(tmp_path):
    files = load_imagefolder(str(_tree(tmp_path / "f", corrupt=True)), "train", SIZE, None)
    bad = files.paths.index(str(tmp_path / "f" / "cat" / "03.jpg"))
    it = batch_iterator(files, fake_tokenizer, 8, seed=0, device="cpu", num_workers=2)
    batches = _take(it, 6)                                                            # 2 epochs: file met twice
    assert all(b.images.shape == (8, 3, SIZE, SIZE) for b in batches)               # substituted, B constant
    assert it.skipped == {bad}
    # the substitute is the next file (same class here), so the label stays valid
    assert all(int(lab) < len(CLASSES) for b in batches for lab in b.labels)
    skipped = SkipCount()
    rows = list(eval_batches(files, 0, len(files), 10, "cpu", num_workers=2, skipped=skipped))
    assert sum(len(lab) for _, lab in rows) == len(files) - 1 and len(skipped) == 1


class _Record(Hooks):
    def __init__(self):
        self.steps, self.summary = [], None

    def on_step(self, step, scalars):
        self.steps.append(dict(scalars))

    def on_end(self, summary):
        self.summary = summary


FAST = ["model.pretrained=none", "data.batch_size=8", "data.max_eval_samples=16", "train.threads=1",
        "train.similarity_probe=0", "train.eval_at_start=false", "data.num_workers=2"]


def test_run_on_a_folder_with_a_corrupt_image_counts_it(tmp_path):
    root = _tree(tmp_path / "f", corrupt=True)
    rec = _Record()
    cfg = load_preset("flyp", FAST + ["data.train_set=imagefolder", f"data.path={root}",
                                      'data.eval_sets=["imagefolder"]', "train.steps=7"])
    summary = run(cfg, rec)
    assert summary.status == "done" and summary.steps == 7
    assert summary.skipped_images == 1 and rec.steps[-1][("skipped_images", "train")] == 1.0
    assert all(s[("images_per_s", "")] > 0 and s[("data_wait", "")] >= 0 for s in rec.steps)
    assert summary.images_per_s > 0
    assert summary.final_eval["imagefolder"]["skipped_images"] == 1.0                # eval dropped it


def _tsv(root):
    """FLYP TSV: one row per image x template (filepath, title), classnames.txt next to it."""
    _tree(root / "img", per_class=4)
    templates = ["a photo of a {}.", "a drawing of a {}."]
    with open(root / "train.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["filepath", "title"])
        for name in CLASSES:
            for i in range(4):
                for t in templates:
                    w.writerow([f"img/{name}/{i:02d}.jpg", t.format(name)])
    (root / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    return root / "train.tsv"


def test_tsv_trains_with_steps_from_epochs_counting_distinct_images(tmp_path):
    tsv = _tsv(tmp_path)
    ds = load_csv(str(tsv), SIZE, None)
    assert len(ds) == 24 and distinct_images(ds) == 12
    rec = _Record()
    cfg = load_preset("flyp", FAST + ["model.name=tiny-vit", "data.train_set=csv", f"data.path={tsv}",
                                      'data.eval_sets=["csv"]', "train.steps=0", "train.epochs=2"])
    summary = run(cfg, rec)
    assert summary.status == "done"
    assert summary.steps == 2 * math.ceil(12 / 8)             # an epoch is over the images, not the rows
    assert all(math.isfinite(s[("loss", "total")]) for s in rec.steps)
    assert summary.skipped_images == 0


def test_transforms_have_the_reference_geometry(tmp_path):
    path = tmp_path / "x.jpg"
    _jpeg(path, 0, (300, 200))
    im = Image.open(path).convert("RGB")
    ev = eval_transform(im, 224)
    assert ev.shape == (3, 224, 224) and ev.dtype == torch.uint8
    assert torch.equal(ev.float() / 255.0, load_image(str(path), 224))             # the in-process decode
    square = Image.open(path).convert("RGB").resize((256, 240))   # 300x200 is outside 3/4-4/3: centre fallback
    tr = [train_transform(square, 224, s) for s in range(6)]
    assert all(t.shape == (3, 224, 224) and t.dtype == torch.uint8 for t in tr)
    assert torch.equal(tr[0], train_transform(square, 224, 0)) and len({t.sum().item() for t in tr}) > 1
    rng = random.Random(0)
    for _ in range(200):
        left, top, w, h = crop_box(256, 240, rng)
        assert 0 <= left and left + w <= 256 and 0 <= top and top + h <= 240
        assert 0.9 * 256 * 240 * 0.98 <= w * h <= 256 * 240                         # scale 0.9-1 (rounding)
        assert 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03
    assert crop_box(300, 200, rng) == (16, 0, 267, 200)      # 3:2 never fits 4/3 at area >= 0.9: centred fallback


def test_auto_workers(tmp_path):
    files = load_imagefolder(str(_tree(tmp_path / "f", per_class=1)), "train", SIZE, None)
    memory = TensorImageSet("m", torch.zeros(3, 3, 8, 8), torch.arange(3), CLASSES, ["a {}."])
    assert resolve_workers(-1, memory) == 0 and resolve_workers(3, memory) == 3
    assert 1 <= resolve_workers(-1, files) <= 8


def test_fp16_autocast_gets_a_grad_scaler():
    from tracer_core.training.setup import make_autocast, make_scaler
    precision, ctx = make_autocast(torch.device("cpu"), "fp16")
    assert precision == "fp16" and isinstance(make_scaler(torch.device("cpu"), precision), torch.amp.GradScaler)
    with ctx():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float16
    assert make_scaler(torch.device("cpu"), "bf16") is None
    with pytest.raises(Exception, match="train.precision"):
        load_preset("flyp", ["train.precision=fp8"])
