"""Layer taps and per-layer CKA/SVCCA (tracer_algorithm.md §9.2), standalone and inside the training loop."""
import copy
import math

import pytest
import torch

from tracer_core.config import ConfigError, load_preset
from tracer_core.data import load_dataset
from tracer_core.models import build_model
from tracer_core.models.taps import collect_features, declared_layers
from tracer_core.training import Hooks, run
from tracer_core.training.representations import (KINDS, PAIRS, SimilarityTracker, build_similarity_tracker,
                                                  make_probe)

FAST = ["model.pretrained=none", "data.train_set=synthetic", 'data.eval_sets=["synthetic"]',
        "data.batch_size=16", "data.max_eval_samples=64", "train.threads=1"]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, tok = build_model(load_preset("flyp", ["model.pretrained=none"]).model)
    data = load_dataset("synthetic", split="test", image_size=model.image_size, max_samples=64)
    return model, tok, data


def _values(rows, kind="linear_cka"):
    return {(r["tower"], r["layer"]): r["value"] for r in rows if r["kind"] == kind}


def test_taps_give_one_matrix_per_declared_layer_and_match_the_forward(tiny):
    model, tok, data = tiny
    probe = make_probe(data, tok, 12, seed=0)
    feats = collect_features(model, probe.images, probe.tokens, batch_size=5)   # 3 chunks, concatenated
    keys = declared_layers(model)
    assert list(feats) == keys
    names = [(t, n) for t, n, _ in keys]
    assert names[:7] == [("vision", n) for n in ("patch_embed", "block_0", "block_1", "block_2", "block_3",
                                                 "ln_post", "final_proj")]
    assert ("text", "token_embed") in names and ("text", "ln_final") in names and ("text", "block_2") in names
    assert all(v.shape[0] == 12 and v.ndim == 2 for v in feats.values())
    assert feats[("vision", "block_0", 1)].shape[1] == 128 and feats[("vision", "final_proj", 6)].shape[1] == 64
    with torch.no_grad():            # the last taps are exactly what the towers output (pre-normalisation)
        img = model.clip.encode_image((probe.images - model.mean) / model.std)
        txt = model.clip.encode_text(probe.tokens)
    assert torch.allclose(feats[("vision", "final_proj", 6)], img, atol=1e-5)
    assert torch.allclose(feats[("text", "final_proj", 5)], txt, atol=1e-5)
    assert model.training             # collect_features restores the mode it found


def test_identical_copy_is_cka_one_and_last_block_perturbation_only_moves_later_layers(tiny):
    model, tok, data = tiny
    tracker = SimilarityTracker(make_probe(data, tok, 32, seed=0), model)
    same = tracker.rows(copy.deepcopy(model))
    assert {r["kind"] for r in same} == set(KINDS) and {r["pair"] for r in same} == {"student_vs_pretrained"}
    assert all(abs(r["value"] - 1.0) < 1e-6 for r in same)

    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for blk in (perturbed.clip.visual.transformer.resblocks[-1], perturbed.clip.transformer.resblocks[-1]):
            for p in blk.parameters():
                p.add_(torch.randn_like(p) * p.std().clamp_min(0.05))
    cka = _values(tracker.rows(perturbed))
    unchanged = ["patch_embed", "block_0", "block_1", "block_2"]
    for layer in unchanged:
        assert cka[("vision", layer)] == pytest.approx(1.0, abs=1e-6)
    for layer in ("token_embed", "block_0", "block_1"):
        assert cka[("text", layer)] == pytest.approx(1.0, abs=1e-6)
    for key in [("vision", "block_3"), ("vision", "ln_post"), ("vision", "final_proj"),
                ("text", "block_2"), ("text", "ln_final"), ("text", "final_proj")]:
        assert cka[key] < 0.995, key


def test_tracker_svcca_with_shared_svds_equals_the_pure_function(tiny):
    """The tracker decomposes each matrix once per evaluation; its SVCCA must be exactly svcca(X, Y)."""
    from tracer_core.training.representations import similarity_rows
    model, tok, data = tiny
    tracker = SimilarityTracker(make_probe(data, tok, 16, seed=1), model)
    student, teacher = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        for m, scale in ((student, 0.3), (teacher, 0.1)):
            for p in m.clip.visual.transformer.resblocks[-1].parameters():
                p.add_(torch.randn_like(p) * scale)
    for _ in range(2):                       # twice: the reference's cached SVDs are reused, the rest is redone
        got = tracker.rows(student, teacher)
        s, t = tracker.features(student), tracker.features(teacher)
        want = (similarity_rows(s, tracker.reference, "student_vs_pretrained", KINDS)
                + similarity_rows(s, t, "student_vs_teacher", KINDS)
                + similarity_rows(t, tracker.reference, "teacher_vs_pretrained", KINDS))
        assert [r["kind"] for r in got] == [r["kind"] for r in want]
        for g, w in zip(got, want):
            assert g["value"] == pytest.approx(w["value"], abs=1e-12, nan_ok=True), (g, w)
        with torch.no_grad():
            for p in student.clip.visual.transformer.resblocks[-2].parameters():
                p.add_(torch.randn_like(p) * 0.2)


def test_probe_is_fixed_and_leaves_the_global_rng_alone(tiny):
    _, tok, data = tiny
    state = torch.get_rng_state()
    a, b = make_probe(data, tok, 16, seed=3), make_probe(data, tok, 16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.images, b.images) and torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.images, make_probe(data, tok, 16, seed=4).images)
    assert make_probe(data, tok, 1000, seed=0).images.shape[0] == len(data)     # capped at the set size


def test_probe_size_is_configurable_and_validated(tiny):
    model, tok, data = tiny
    cfg = load_preset("flyp", FAST + ["train.similarity_probe=0"])
    assert build_similarity_tracker(cfg, model, tok, {"synthetic": data}) is None
    with pytest.raises(ConfigError, match="similarity_probe"):
        load_preset("flyp", ["train.similarity_probe=2"])


class Recorder(Hooks):
    def __init__(self):
        self.evals = []

    def on_eval(self, report):
        self.evals.append(report)


def test_loop_fills_similarities_with_teacher_pairs_at_every_eval():
    rec = Recorder()
    run(load_preset("tracer", FAST + ["train.steps=4", "train.eval_every=2", "optim.lr=1e-3",
                                      "train.similarity_probe=32"]), rec)
    assert [e.step for e in rec.evals] == [0, 2, 4]
    n_layers = 7 + 6                     # tiny-vit: 4 vision blocks + 3 taps, 3 text blocks + 3 taps
    for e in rec.evals:
        assert {r["pair"] for r in e.similarities} == set(PAIRS)
        assert len(e.similarities) == n_layers * len(PAIRS) * len(KINDS)
        assert all(set(r) == {"tower", "layer", "layer_index", "pair", "kind", "value"} for r in e.similarities)
    start = _values([r for r in rec.evals[0].similarities if r["pair"] == "student_vs_pretrained"])
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in start.values())       # step 0: student is theta_0
    end = [r for r in rec.evals[-1].similarities if r["kind"] == "linear_cka"]
    moved = {r["pair"]: r["value"] for r in end if (r["tower"], r["layer"]) == ("vision", "final_proj")}
    assert moved["student_vs_pretrained"] < 1 - 1e-6 and all(math.isfinite(v) for v in moved.values())


def test_loop_without_teacher_has_only_student_vs_pretrained():
    rec = Recorder()
    run(load_preset("flyp", FAST + ["train.steps=2", "train.similarity_probe=16"]), rec)
    assert [e.step for e in rec.evals] == [0, 2]
    assert all({r["pair"] for r in e.similarities} == {"student_vs_pretrained"} for e in rec.evals)
