"""The dataset registry: contract over every registered set, MNIST splits, corruptions, files on disk."""
from __future__ import annotations

import csv
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tracer_core.data import (DIGIT_TEMPLATES, DIGIT_WORDS, DataError, FileImageSet, TensorImageSet, caption_for,
                              dataset_info, list_datasets, load_dataset)
from tracer_core.data import digits

BUILTIN = [n for n in list_datasets() if n not in ("imagefolder", "csv")]
DIGIT_SETS = ["mnist", "colored_mnist", "corrupted_mnist", "sklearn_digits", "heldout_fonts", "world"]


def check_sample(ds, image_size):
    n_classes = dataset_info(ds.name.split(":")[0])["num_classes"] or len(ds.classnames)
    for i in (0, len(ds) - 1):
        image, label = ds[i]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
        assert image.shape == (3, image_size, image_size)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert isinstance(label, int) and 0 <= label < n_classes
        assert label == int(ds.labels[i])
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds),)
    assert len(ds.classnames) == n_classes
    assert ds.templates and all("{}" in t for t in ds.templates)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", BUILTIN)
def test_registered_dataset_contract(name, split):
    ds = load_dataset(name, split=split, max_samples=20)
    assert len(ds) == 20
    check_sample(ds, 28)
    info = dataset_info(name)
    assert set(info) == {"name", "description", "num_classes", "kind"}
    assert info["kind"] in {"id", "ood", "pretrain", "synthetic", "files"} and info["description"]
    images, labels = ds.tensors()
    assert images.shape == (20, 3, 28, 28) and torch.equal(labels, ds.labels)
    assert torch.equal(images[3], ds[3][0])
    assert float(images.std()) > 0.05


@pytest.mark.parametrize("name", ["mnist", "sklearn_digits", "heldout_fonts", "synthetic"])
def test_other_image_size(name):
    check_sample(load_dataset(name, image_size=40, max_samples=8), 40)


@pytest.mark.parametrize("name", DIGIT_SETS)
def test_digit_sets_share_the_world_vocabulary(name):
    ds = load_dataset(name, max_samples=4)
    assert ds.classnames == DIGIT_WORDS == ["zero", "one", "two", "three", "four", "five", "six", "seven",
                                            "eight", "nine"]
    assert ds.templates == DIGIT_TEMPLATES


def test_mnist_splits_are_disjoint_stratified_and_complete():
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert len(train) == 4000 and len(test) == 1000
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    raw, labels = digits._mnist_raw()
    tr_idx = digits.stratified_split(labels, 0.2, 5, "train")
    te_idx = digits.stratified_split(labels, 0.2, 5, "test")
    assert set(tr_idx.tolist()).isdisjoint(te_idx.tolist())
    assert len(set(tr_idx.tolist()) | set(te_idx.tolist())) == 5000
    # image level: no test image appears in train (hash the raw bytes)
    key = lambda x: (x * 255).round().to(torch.uint8).numpy().tobytes()
    train_keys = {key(x) for x in train.tensors()[0][:, 0]}
    assert not any(key(x) in train_keys for x in test.tensors()[0][:, 0])


def test_mnist_split_depends_on_seed_and_is_reproducible():
    a, b = load_dataset("mnist", seed=0), load_dataset("mnist", seed=0)
    c = load_dataset("mnist", seed=1)
    assert torch.equal(a.tensors()[0], b.tensors()[0])
    assert not torch.equal(a.tensors()[0], c.tensors()[0])


def test_max_samples_keeps_a_class_balanced_prefix():
    ds = load_dataset("mnist", max_samples=30)
    assert torch.bincount(ds.labels, minlength=10).tolist() == [3] * 10
    full = load_dataset("mnist")
    assert torch.equal(ds.tensors()[0], full.tensors()[0][:30])


def test_colored_mnist_recolours_the_same_digits():
    plain, coloured = load_dataset("mnist", max_samples=50), load_dataset("colored_mnist", max_samples=50)
    assert torch.equal(plain.labels, coloured.labels)
    x = coloured.tensors()[0]
    assert float((x[:, 0] - x[:, 1]).abs().mean()) > 0.05          # real colour, not grey
    # the digit shape is kept: pixel colour distance to the background tracks MNIST's ink
    bg = x[:, :, 0, 0][:, :, None, None]
    dist = (x - bg).norm(dim=1)                                      # (N,28,28)
    ink = plain.tensors()[0][:, 0]
    assert float(torch.corrcoef(torch.stack([dist.flatten(), ink.flatten()]))[0, 1]) > 0.9


@pytest.mark.parametrize("kind", digits.CORRUPTIONS)
def test_corruption_strength_grows_with_severity(kind):
    clean = load_dataset("mnist", max_samples=12).tensors()[0]
    err = [float((load_dataset(f"corrupted_mnist:{kind}:{s}", max_samples=12).tensors()[0] - clean).abs().mean())
           for s in (1, 3, 5)]
    assert 0 < err[0] < err[1] < err[2], err


def test_corrupted_mnist_is_reproducible_and_keeps_labels():
    a = load_dataset("corrupted_mnist", max_samples=30)
    b = load_dataset("corrupted_mnist", max_samples=30)
    assert torch.equal(a.tensors()[0], b.tensors()[0])
    assert torch.equal(a.labels, load_dataset("mnist", max_samples=30).labels)
    state = torch.get_rng_state()
    load_dataset("corrupted_mnist:noise:2", max_samples=5)
    assert torch.equal(state, torch.get_rng_state())                # the caller's RNG is untouched


@pytest.mark.parametrize("bad", ["corrupted_mnist:fog", "corrupted_mnist:blur:9", "corrupted_mnist:blur:3:1",
                                 "mnist:blur"])
def test_bad_variant_names(bad):
    with pytest.raises(DataError):
        load_dataset(bad, max_samples=2)


def test_bad_names_and_arguments():
    with pytest.raises(DataError, match="did you mean mnist"):
        load_dataset("mnsit")
    with pytest.raises(DataError, match="split"):
        load_dataset("mnist", split="validation")
    with pytest.raises(DataError, match="max_samples"):
        load_dataset("mnist", max_samples=0)
    with pytest.raises(DataError, match="image_size"):
        load_dataset("mnist", image_size=2)
    assert issubclass(DataError, ValueError)
    assert "blur at severity 3" in dataset_info("corrupted_mnist:blur:3")["description"]
    with pytest.raises(DataError, match="unknown dataset"):
        dataset_info("nope")


def test_sklearn_digits_are_framed_like_mnist():
    x = load_dataset("sklearn_digits", max_samples=100).tensors()[0]
    assert float(x[:, :, :3].max()) == 0.0 and float(x[:, :, :, -3:].max()) == 0.0   # 4-px empty frame
    assert float(x[:, :, 8:20, 8:20].mean()) > 0.2


def test_caption_for_fills_templates_or_returns_sample_captions():
    ds = load_dataset("mnist", max_samples=10)
    for rng in (random.Random(0), np.random.default_rng(0), torch.Generator().manual_seed(0), None):
        caption = caption_for(ds, 7, rng)
        assert caption in [t.format("seven") for t in ds.templates]
    seen = {caption_for(ds, 3, random.Random(i)) for i in range(40)}
    assert len(seen) > 1                                           # the template really is random
    world = load_dataset("world", max_samples=5)
    assert caption_for(world, 2, random.Random(0)) == world.captions[2]
    with pytest.raises(DataError):
        caption_for(ds, 10, None)


def test_tensor_image_set_validates_shapes():
    with pytest.raises(DataError, match="images must be"):
        TensorImageSet("x", torch.zeros(3, 28, 28), torch.zeros(3), ["a"], ["{}"])
    with pytest.raises(DataError, match="template"):
        TensorImageSet("x", torch.zeros(1, 3, 4, 4), torch.zeros(1), ["a"], ["no slot"])
    with pytest.raises(DataError, match="labels"):
        TensorImageSet("x", torch.zeros(1, 3, 4, 4), torch.tensor([2]), ["a", "b"], ["{}"])


# -- files on disk -------------------------------------------------------------------------------------

def _png(path, mode="RGB", size=(40, 30), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0]) + ((3,) if mode == "RGB" else ()), value, dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for i in range(3):
        _png(root / "red_panda" / f"{i}.png", "RGB", value=200)
        _png(root / "cat" / f"{i}.png", "L", size=(20, 50), value=50)
    return root


def test_imagefolder_reads_classes_and_images(folder):
    ds = load_dataset("imagefolder", path=str(folder), image_size=24)
    assert isinstance(ds, FileImageSet) and ds.tensors() is None
    assert ds.classnames == ["cat", "red panda"] and len(ds) == 6
    check_sample(ds, 24)
    grey, label = ds[0]
    assert ds.classnames[label] == "cat"
    assert torch.equal(grey[0], grey[1]) and torch.allclose(grey, torch.full_like(grey, 50 / 255), atol=1e-2)
    assert torch.bincount(load_dataset("imagefolder", path=str(folder), max_samples=2).labels).tolist() == [1, 1]


def test_imagefolder_classnames_file_and_mismatch(folder):
    (folder / "classnames.txt").write_text("kitty\nlesser panda\n")
    assert load_dataset("imagefolder", path=str(folder)).classnames == ["kitty", "lesser panda"]
    (folder / "classnames.txt").write_text("kitty\nlesser panda\ndog\n")
    with pytest.raises(DataError, match="3 classes but .* 2 class folders"):
        load_dataset("imagefolder", path=str(folder))


def test_imagefolder_split_folders(tmp_path):
    for split in ("train", "test"):
        _png(tmp_path / split / "a" / "0.png")
        _png(tmp_path / split / "b" / "0.png")
    _png(tmp_path / "train" / "b" / "1.png")
    assert len(load_dataset("imagefolder", "train", path=str(tmp_path))) == 3
    assert len(load_dataset("imagefolder", "test", path=str(tmp_path))) == 2


def test_corrupt_image_names_the_file(folder):
    bad = folder / "cat" / "zz_broken.png"
    bad.write_bytes(b"this is not a png")
    ds = load_dataset("imagefolder", path=str(folder))
    idx = ds.paths.index(str(bad))
    with pytest.raises(DataError, match="zz_broken.png"):
        ds[idx]


@pytest.mark.parametrize("name", ["imagefolder", "csv"])
def test_missing_or_empty_path(tmp_path, name):
    with pytest.raises(DataError, match="does_not_exist"):
        load_dataset(name, path=str(tmp_path / "does_not_exist"))
    with pytest.raises(DataError, match="needs a path"):
        load_dataset(name, path="")


def _table(tmp_path, rows, sep=",", name="train.csv"):
    for r in rows:
        _png(tmp_path / "img" / r[0].split("/")[-1])
    with open(tmp_path / name, "w", newline="") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(["filepath", "title", "label"][: len(rows[0])])
        writer.writerows(rows)
    return tmp_path / name


def test_csv_flyp_format_with_labels_and_captions(tmp_path):
    f = _table(tmp_path, [("img/a.png", "a photo of a cat.", 0), ("img/b.png", "a dog, sleeping", 1)])
    (tmp_path / "classnames.txt").write_text("cat\ndog\n")
    ds = load_dataset("csv", path=str(f), image_size=16)
    assert ds.classnames == ["cat", "dog"] and ds.labels.tolist() == [0, 1]
    assert ds.captions == ["a photo of a cat.", "a dog, sleeping"]
    assert caption_for(ds, 1, random.Random(0)) == "a dog, sleeping"
    check_sample(ds, 16)


def test_tsv_without_label_column_derives_labels_from_titles(tmp_path):
    f = _table(tmp_path, [("img/a.png", "a sea lion on a rock"), ("img/b.png", "a lion")], sep="\t",
               name="data.tsv")
    (tmp_path / "classnames.txt").write_text("lion\nsea lion\n")
    assert load_dataset("csv", path=str(f)).labels.tolist() == [1, 0]   # longest class name wins


def test_csv_label_mismatch_and_bad_columns(tmp_path):
    f = _table(tmp_path, [("img/a.png", "x", 0), ("img/b.png", "y", 2)])
    (tmp_path / "classnames.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match="label 2 but classnames.txt lists 2 classes"):
        load_dataset("csv", path=str(f))
    (tmp_path / "bad.csv").write_text("path,caption\nimg/a.png,x\n")
    with pytest.raises(DataError, match="filepath"):
        load_dataset("csv", path=str(tmp_path / "bad.csv"))
    (tmp_path / "ragged.csv").write_text("filepath,title\nimg/a.png,a cat, sleeping\n")
    with pytest.raises(DataError, match="row 2 has more fields"):
        load_dataset("csv", path=str(tmp_path / "ragged.csv"))
    (tmp_path / "gone.csv").write_text("filepath,title\nimg/missing.png,x\n")
    with pytest.raises(DataError, match="missing.png"):
        load_dataset("csv", path=str(tmp_path / "gone.csv"))


def test_importing_the_registry_does_not_import_streamlit():
    code = "import sys, tracer_core.data; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
