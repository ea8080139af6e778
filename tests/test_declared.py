"""Declared datasets and the ImageNet family (issue 12): a tiny ImageNet-shaped tree generated here
(real wnids, the real val / V2 / Sketch / R / A / ObjectNet folder layouts, 48 px JPEGs), trained on and
evaluated through a datasets file; the R/A subset head and ObjectNet's max-pooling on known logits; the
checks before a run (bad paths, class mismatches) leave the store unchanged."""
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tracer_core import cli
from tracer_core.data import imagenet, load_dataset
from tracer_core.data.runsets import check_run_data
from tracer_core.models.zeroshot import group_index, project_logits
from tracer_core.training.evaluate import evaluate_model, head_classes

WNID = {0: "n01440764", 6: "n01498041", 11: "n01531178", 13: "n01534433", 22: "n01614925"}  # tench, stingray,
FAMILY_SETS = ["imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet"]  # goldfinch,
ONE_TEMPLATE = "a photo of a {}."                                          # junco, bald eagle


def _jpegs(folder, n, seed, border=None):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        a = (rng.random((40 + 8 * k, 48, 3)) * 255).astype("uint8")
        if border is not None:            # a 2 px frame of one colour around a green inside
            a[:] = (0, 200, 0)
            a[:2], a[-2:], a[:, :2], a[:, -2:] = border, border, border, border
        Image.fromarray(a).save(os.path.join(folder, f"img{k}.jpg"), quality=95)


def _tree(root):
    """The six layouts + a datasets file (relative paths) + a one-template file (keeps heads cheap on CPU)."""
    for i, w in enumerate(WNID.values()):
        _jpegs(f"{root}/imagenet/train/{w}", 4, i)
        _jpegs(f"{root}/imagenet/val/{w}", 2, 10 + i)
        _jpegs(f"{root}/sketch/{w}", 1, 20 + i)
    for i in WNID:
        _jpegs(f"{root}/imagenetv2/{i}", 1, 30 + i)
    for w in (WNID[6], WNID[11], WNID[13]):
        _jpegs(f"{root}/imagenet-r/{w}", 1, 40)
    for w in (WNID[6], WNID[22]):
        _jpegs(f"{root}/imagenet-a/{w}", 1, 50)
    _jpegs(f"{root}/objectnet/images/alarm_clock", 1, 60, border=(255, 0, 0))
    _jpegs(f"{root}/objectnet/images/backpack", 1, 61, border=(255, 0, 0))
    _jpegs(f"{root}/objectnet/images/air_freshener", 1, 62)      # one of ObjectNet's 200 unmapped classes
    with open(f"{root}/objectnet/images/air_freshener/corrupt.jpg", "wb") as f:
        f.write(b"not a jpeg")                                   # in a skipped folder: never opened
    with open(f"{root}/one_template.txt", "w") as f:
        f.write(ONE_TEMPLATE + "\n")
    paths = {"imagenet": "imagenet", "imagenet_v2": "imagenetv2", "imagenet_sketch": "sketch",
             "imagenet_r": "imagenet-r", "imagenet_a": "imagenet-a", "objectnet": "objectnet/images"}
    sets = [{"name": n, "kind": "imagefolder", "path": p, "family": n, "templates": "one_template.txt"}
            for n, p in paths.items()]
    _write(root, sets)
    return f"{root}/datasets.json"


def _write(root, sets, name="datasets.json"):
    with open(f"{root}/{name}", "w") as f:
        json.dump({"datasets": sets}, f)
    return f"{root}/{name}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet_tree")
    return str(root), _tree(str(root))


def test_shipped_facts_agree():
    """1000 sorted wnids / names; R and A are 200-class subsets; ObjectNet 113 classes over 125 ImageNet ones."""
    assert len(imagenet.wnids()) == 1000 and list(imagenet.wnids()) == sorted(imagenet.wnids())
    assert len(imagenet.classnames()) == 1000 and imagenet.classnames()[0] == "tench"
    for fam in ("imagenet_r", "imagenet_a"):
        assert len(set(imagenet.subset_indices(fam))) == 200
    assert imagenet.subset_indices("imagenet_r")[:4] == (1, 2, 4, 6)         # wise-ft imagenet_r.CLASS_SUBLIST
    obj = imagenet.objectnet_classes()
    assert len(obj) == 113 and len({i for _, _, g in obj for i in g}) == 125
    assert obj[0] == ("alarm_clock", "alarm clock", (409, 530))
    t80, t86, short = (imagenet.template_set(n) for n in ("openai80", "reference86", "short"))
    assert (len(t80), len(t86), len(short)) == (80, 86, 7) and t86[:80] == t80
    assert t86[80] == "a photo containing a small {}." and all("{}" in t for t in t80 + t86 + short)


def test_family_layouts_labels_and_heads(tree):
    root, file = tree
    load = lambda n: load_dataset(n, split="test", image_size=32, datasets_file=file)   # noqa: E731
    val, v2, sketch, r, a, obj = (load(n) for n in FAMILY_SETS)
    for ds in (val, v2, sketch):                  # full 1000-class label space, label = ImageNet index
        assert ds.num_classes == 1000 and sorted(set(ds.labels.tolist())) == sorted(WNID)
        assert ds.eval_head is None and ds.templates == [ONE_TEMPLATE]
    assert v2.paths[v2.labels.tolist().index(6)].endswith("/imagenetv2/6/img0.jpg")   # folder "6" -> class 6
    r_sub = imagenet.subset_indices("imagenet_r")
    assert r.num_classes == 200 and [r_sub[y] for y in r.labels.tolist()] == [6, 11, 13]
    assert r.eval_head.kind == "subset" and len(r.eval_head.space) == 1000 and head_classes(r)[6] == "stingray"
    a_sub = imagenet.subset_indices("imagenet_a")
    assert [a_sub[y] for y in a.labels.tolist()] == [6, 22]
    assert obj.num_classes == 113 and obj.crop_border == 2 and obj.classnames[obj.labels[0]] == "alarm clock"
    assert not any("air_freshener" in p for p in obj.paths) and len(obj) == 2
    assert obj.eval_head.kind == "max" and obj.eval_head.groups[0] == (409, 530)
    img, _ = obj[0]                               # 2 px red frame cropped before the resize: no red left
    assert img.shape == (3, 32, 32) and float(img[0].max()) < 0.3 and float(img[1].min()) > 0.6


def test_templates_selection(tree, tmp_path):
    root, file = tree
    assert len(load_dataset("imagenet", datasets_file=file, image_size=32, templates="reference86").templates) == 86
    bad = tmp_path / "bad.txt"
    bad.write_text("no slot here\n")
    with pytest.raises(ValueError, match="data.templates: templates file .* '\\{\\}' slot"):
        load_dataset("imagenet", datasets_file=file, image_size=32, templates=str(bad))
    f2 = _write(str(tmp_path), [{"name": "val2", "kind": "imagefolder", "path": f"{root}/imagenet", "family": "imagenet"}])
    assert len(load_dataset("val2", datasets_file=f2, image_size=32).templates) == 80      # family default


class _Features(torch.nn.Module):
    """encode_image returns the sample index as a 1-d feature, so a head can hand out known logits."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def encode_image(self, images):
        out = torch.arange(self.calls, self.calls + len(images), dtype=torch.float32)[:, None]
        self.calls += len(images)
        return out


def _known_head(table):
    return lambda feats: table[feats[:, 0].long()]


def test_subset_head_restricts_before_argmax_and_calibration(tree):
    """Every R image gets its true class logit 5 and tench (index 0, outside R's 200) logit 9: the full
    1000-way argmax is always tench, the restricted one always right; ECE/NLL come from the 200 logits."""
    r = load_dataset("imagenet_r", split="test", image_size=32, datasets_file=tree[1])
    sub = imagenet.subset_indices("imagenet_r")
    table = torch.zeros(len(r), 1000)
    for i, y in enumerate(r.labels.tolist()):
        table[i, sub[y]], table[i, 0] = 5.0, 9.0
    assert (table.argmax(1) == 0).all()
    res = evaluate_model(_Features(), None, r, 64, "cpu", head=_known_head(table))["metrics"]
    restricted = table[:, list(sub)]                                          # (N, 200)
    nll = float(torch.nn.functional.cross_entropy(restricted, r.labels))
    conf = float(restricted.softmax(1).max(1).values.mean())
    assert res["accuracy"] == 1.0
    assert res["nll"] == pytest.approx(nll, rel=1e-5) and res["ece"] == pytest.approx(1 - conf, rel=1e-5)


def test_objectnet_logit_is_max_over_mapped_imagenet_logits(tree):
    obj = load_dataset("objectnet", split="test", image_size=32, datasets_file=tree[1])
    logits = torch.zeros(2, 1000)
    logits[:, 0] = 50.0                         # tench, mapped to no ObjectNet class: ignored by the pooling
    assert all(0 not in g for g in obj.eval_head.groups)
    logits[0, 409], logits[0, 530], logits[0, 414] = 3.0, 7.0, 6.0     # alarm clock = max(3, 7) > backpack 6
    logits[1, 409], logits[1, 414] = 8.0, 9.0                           # backpack 9 > alarm clock 8
    pooled = project_logits(logits, group_index(obj.eval_head.groups))
    manual = torch.stack([logits[:, list(g)].max(1).values for g in obj.eval_head.groups], 1)
    assert pooled.shape == (2, 113) and torch.equal(pooled, manual)
    assert pooled[0, :2].tolist() == [7.0, 6.0] and pooled[1, :2].tolist() == [8.0, 9.0]
    res = evaluate_model(_Features(), None, obj, 64, "cpu", head=_known_head(logits))["metrics"]
    assert obj.labels.tolist() == [0, 1] and res["accuracy"] == 1.0


def _runs(data_dir):
    runs = os.path.join(data_dir, "runs")
    return sorted(os.listdir(runs)) if os.path.isdir(runs) else []


def _train(file, *sets, extra=()):
    return ["train", "--preset", "flyp", "--quiet", "--json", "--set", f"data.datasets_file={file}",
            "--set", "model.name=tiny-vit", "--set", "train.steps=2", "--set", "data.batch_size=4",
            "--set", "train.similarity_probe=0", "--set", "train.eval_at_start=false",
            "--set", "train.save_final=false", *sets, *extra]


def test_train_and_evaluate_through_datasets_file(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACER_DATA_DIR", str(tmp_path))
    rc = cli.main(_train(tree[1], "--set", "data.train_set=imagenet", "--set", f"data.eval_sets={','.join(FAMILY_SETS)}"))
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["status"] == "done" and set(out["final_eval"]) == set(FAMILY_SETS)
    assert all(0.0 <= m["accuracy"] <= 1.0 and m["ece"] >= 0 for m in out["final_eval"].values())
    assert _runs(str(tmp_path)) == [out["run_id"]]


def test_eval_subcommand_lands_a_zeroshot_run(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACER_DATA_DIR", str(tmp_path))
    rc = cli.main(["eval", "--model", "tiny-vit", "--pretrained", "embedded", "--sets", "imagenet,imagenet_r,objectnet",
                   "--datasets", tree[1], "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["steps"] == 0 and set(out["final_eval"]) == {"imagenet", "imagenet_r", "objectnet"}
    with open(os.path.join(str(tmp_path), "runs", out["run_id"], "config.json")) as f:
        stored = json.load(f)["config"]
    assert stored["method"] == "zeroshot" and stored["data"]["eval_sets"] == ["imagenet", "imagenet_r", "objectnet"]
    assert stored["data"]["max_eval_samples"] > 10**6          # the paper row scores every image


def _bad_cases(root):
    """(extra declared sets, train set, eval sets, expected message) per refused input."""
    os.makedirs(f"{root}/empty", exist_ok=True)
    for name in ("tench", "goldfinch", "unicorn"):
        _jpegs(f"{root}/named/{name}", 1, 70)
    _jpegs(f"{root}/one_class/tench", 2, 71)
    _jpegs(f"{root}/bad_r/{WNID[0]}", 1, 72)                  # tench is not an ImageNet-R class
    named = {"name": "named", "kind": "imagefolder", "path": f"{root}/named"}
    return {
        "class mismatch": ([named], "imagenet", ["named"],
                           r"dataset 'named' has classes that differ from the train set 'imagenet'.*only in the eval "
                           r"set: unicorn; only in the train set: .*\(\+99\d more\)"),
        "subset not in train": ([named], "named", ["imagenet_r"], r"dataset 'imagenet_r' is a class subset.*train classes"),
        "missing path": ([{"name": "gone", "kind": "imagefolder", "path": f"{root}/nowhere"}], "imagenet", ["gone"],
                         r"dataset 'gone' .*path does not exist: .*nowhere"),
        "empty folder": ([{"name": "hollow", "kind": "imagefolder", "path": f"{root}/empty"}], "imagenet", ["hollow"],
                         r"dataset 'hollow': empty folder"),
        "classnames file": ([{**named, "name": "named2", "classnames": "missing_names.txt"}], "imagenet", ["named2"],
                            r"dataset 'named2': cannot read its class-names file .*missing_names.txt"),
        "single class": ([{"name": "solo", "kind": "imagefolder", "path": f"{root}/one_class"}], "solo", ["solo"],
                         r"data.train_set: dataset 'solo' has images of 1 class"),
        "wrong family folders": ([{"name": "bad_r", "kind": "imagefolder", "path": f"{root}/bad_r", "family": "imagenet_r"}],
                                 "imagenet", ["bad_r"], r"dataset 'bad_r' \(family imagenet_r\).*not wnids of the ImageNet-R"),
        "unknown name": ([], "imagenet", ["imagenet_c"], r"data.eval_sets: unknown dataset 'imagenet_c'"),
    }


@pytest.mark.parametrize("case", ["class mismatch", "subset not in train", "missing path", "empty folder",
                                  "classnames file", "single class", "wrong family folders", "unknown name"])
def test_bad_sets_are_refused_before_a_run_exists(tree, tmp_path, monkeypatch, capsys, case):
    root = str(tmp_path / "sets")
    extra, train, evals, message = _bad_cases(root)[case]
    with open(tree[1]) as f:
        base = [{**d, "path": os.path.join(tree[0], d["path"]), "templates": os.path.join(tree[0], d["templates"])}
                for d in json.load(f)["datasets"]]
    file = _write(root, base + extra)
    store = tmp_path / "store"
    monkeypatch.setenv("TRACER_DATA_DIR", str(store))
    rc = cli.main(_train(file, "--set", f"data.train_set={train}", "--set", f"data.eval_sets={','.join(evals)}"))
    err = capsys.readouterr().err
    assert rc == 2 and "error: " in err
    assert re.search(message, err), err
    assert _runs(str(store)) == []                               # nothing written to the store


def test_empty_eval_sets_and_bad_datasets_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACER_DATA_DIR", str(tmp_path))
    assert cli.main(["train", "--quiet", "--set", "data.eval_sets=[]"]) == 2
    assert "data.eval_sets must name at least one evaluation set" in capsys.readouterr().err
    bad = tmp_path / "datasets.json"
    bad.write_text("{not json")
    assert cli.main(["train", "--quiet", "--set", f"data.datasets_file={bad}", "--set", "data.train_set=x"]) == 2
    assert f"datasets file {bad} is not readable JSON" in capsys.readouterr().err
    assert _runs(str(tmp_path)) == []


def test_registered_digit_sets_skip_the_file_checks():
    from tracer_core.config import DataConfig
    check_run_data(DataConfig())          # mnist + its OOD sets: only names are checked, nothing is loaded
    with pytest.raises(ValueError, match="data.eval_sets: unknown dataset 'nope'"):
        check_run_data(DataConfig(eval_sets=("mnist", "nope")))


def test_launch_form_lists_and_checks_declared_sets(tree, tmp_path, monkeypatch):
    """The dashboard path: declared names are offered and a class mismatch is refused before queueing."""
    from tracer_core import api
    from tracer_core.config import ConfigError
    monkeypatch.setenv("TRACER_DATASETS", tree[1])
    assert set(FAMILY_SETS) <= set(api.list_datasets()) and "mnist" in api.list_datasets()
    cfg = api.build_config("flyp", {}, extra="data.train_set=imagenet\ndata.eval_sets=imagenet_r,objectnet")
    assert cfg.data.eval_sets == ("imagenet_r", "objectnet")
    with pytest.raises(ConfigError, match="dataset 'mnist' has classes that differ from the train set 'imagenet'"):
        api.build_config("flyp", {}, extra="data.train_set=imagenet\ndata.eval_sets=imagenet,mnist")


@pytest.mark.parametrize("folders,evals,message", [
    (("cat", "dog"), "mnist", r"dataset 'mnist' has classes that differ from the train set 'imagefolder'.*only in "
                              r"the eval set: zero, one, two"),
    (("cat",), "imagefolder", r"data.train_set: dataset 'imagefolder' has images of 1 class")])
def test_issue16_image_folder_against_other_classes_or_one_class(tmp_path, monkeypatch, capsys, folders, evals, message):
    """Issue 16 item 4: an image folder evaluated on another task's labels, or with a single class, is refused."""
    for i, name in enumerate(folders):
        _jpegs(str(tmp_path / "imgs" / name), 2, 80 + i)
    monkeypatch.setenv("TRACER_DATA_DIR", str(tmp_path / "store"))
    rc = cli.main(["train", "--quiet", "--set", "data.train_set=imagefolder", "--set", f"data.path={tmp_path / 'imgs'}",
                   "--set", f"data.eval_sets={evals}"])
    assert rc == 2 and re.search(message, capsys.readouterr().err)
    assert _runs(str(tmp_path / "store")) == []


def test_trained_heads_are_asked_for_the_imagenet_space_of_a_subset_set(tree):
    """A method's trained head (e.g. FT/LP on the 1000 ImageNet classes) scores R over the 1000 classes,
    then the same restriction applies: the method is asked for the head of head_classes(set)."""
    from tracer_core.training.evaluate import evaluate_sets
    r = load_dataset("imagenet_r", split="test", image_size=32, datasets_file=tree[1])
    sub = imagenet.subset_indices("imagenet_r")
    table = torch.zeros(len(r), 1000)
    table[:, 0] = 9.0
    table[torch.arange(len(r)), torch.tensor([sub[y] for y in r.labels.tolist()])] = 5.0

    class Method:
        asked = None

        def classifier_head(self, classes):
            Method.asked = list(classes)
            return _known_head(table)

    report = evaluate_sets(0, _Features(), None, {"imagenet_r": r}, 64, "cpu", method=Method())
    assert Method.asked == list(imagenet.classnames()) and report.metrics["imagenet_r"]["accuracy"] == 1.0


def _old_csv_rows(tsv):
    """What load_csv returned when it held csv.DictReader rows as Python lists (the behaviour to keep)."""
    import csv
    with open(tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [os.path.join(os.path.dirname(tsv), r["filepath"]) for r in rows], [r["title"] for r in rows]


@pytest.mark.parametrize("labels", ["column", "classnames", "titles"])
def test_flyp_tsv_is_held_as_compact_columns_with_the_same_rows(tmp_path, labels):
    """One row per image x template (the FLYP layout): paths and captions are dictionary-encoded (each
    distinct value once, int32 codes per row) and read back exactly as the Python rows were."""
    from tracer_core.data.columns import StringColumn
    from tracer_core.data.files import load_csv
    names, templates = ["tench", "sea lion", "lion"], ["a photo of a {}.", "a {} in the wild", "art of the {}"]
    for i, name in enumerate(names):
        _jpegs(str(tmp_path / "img" / name.replace(" ", "_")), 2, 90 + i)
    header = ["filepath", "title"] + (["label"] if labels == "column" else [])
    table = [(c, [f"img/{n.replace(' ', '_')}/img{k}.jpg", t.format(n)] + ([str(c)] if labels == "column" else []))
             for t in templates for k in range(2) for c, n in enumerate(names)]
    lines = ["\t".join(header)] + ["\t".join(cells) for _, cells in table]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n\n")            # a trailing blank line is skipped
    if labels == "classnames":
        (tmp_path / "classnames.txt").write_text("\n".join(names) + "\n")
    ds = load_csv(str(tmp_path / "train.tsv"), 16, None)
    paths, captions = _old_csv_rows(tmp_path / "train.tsv")
    assert isinstance(ds.paths, StringColumn) and isinstance(ds.captions, StringColumn) and len(ds) == 18
    assert ds.paths == paths and ds.captions == captions and list(ds.captions) == captions
    assert (ds.paths.n_distinct, ds.captions.n_distinct) == (6, 9) and ds.paths.codes.dtype == np.int32
    want = ([sorted(set(captions)).index(c) for c in captions] if labels == "titles"
            else [c for c, _ in table])       # classnames: "sea lion" wins over "lion" (the longest match)
    assert ds.labels.tolist() == want and ds.classnames == (sorted(set(captions)) if labels == "titles" else
                                                            [str(i) for i in range(3)] if labels == "column" else names)
    cut = load_csv(str(tmp_path / "train.tsv"), 16, 4)                         # max_samples: the first rows
    assert cut.paths == paths[:4] and cut.captions == captions[:4] and cut.paths[1:3] == paths[1:3]
    assert cut.paths.index(paths[3]) == 3 and paths[0] in cut.paths and torch.equal(cut[1][0], ds[1][0])


def test_flyp_tsv_short_row_is_named(tmp_path):
    from tracer_core.data.base import DataError
    from tracer_core.data.files import load_csv
    _jpegs(str(tmp_path / "img"), 1, 99)
    (tmp_path / "t.tsv").write_text("filepath\ttitle\nimg/img0.jpg\ta cat\nimg/img0.jpg\n")
    with pytest.raises(DataError, match="row 3 has fewer fields than the header"):
        load_csv(str(tmp_path / "t.tsv"), 16, None)
