"""The procedural pretraining world: determinism, shapes, truthful captions, font split, streaming."""
from __future__ import annotations

import re

import pytest
import torch

from tracer_core.data import HELDOUT_FONTS, TRAIN_FONTS, WorldStream, render_world
from tracer_core.data.glyphs import FONTS, glyph_bank, resolve_fonts
from tracer_core.data.vocab import DIGIT_TEMPLATES, DIGIT_WORDS, WORLD_TEMPLATES
from tracer_core.data.world import CHUNK, compose_batch, derive_seed


@pytest.fixture(scope="module")
def world():
    return render_world(300, seed=7)


@pytest.fixture(scope="module")
def big_world():
    return render_world(1024, seed=11)


def test_same_seed_is_bitwise_identical(world):
    x, y, c = world
    x2, y2, c2 = render_world(300, seed=7)
    assert torch.equal(x, x2) and torch.equal(y, y2) and c == c2


def test_other_seed_differs(world):
    x, y, c = world
    x2, y2, c2 = render_world(300, seed=8)
    assert not torch.equal(x, x2)
    assert (x - x2).abs().mean() > 0.05          # not a tiny perturbation: different images
    assert c != c2


def test_shorter_render_is_a_prefix(world):
    x, y, c = world
    xs, ys, cs = render_world(10, seed=7)
    assert torch.equal(xs, x[:10]) and torch.equal(ys, y[:10]) and cs == c[:10]


@pytest.mark.parametrize("image_size", [28, 32])
def test_shapes_dtype_and_range(image_size):
    x, y, c = render_world(50, seed=1, image_size=image_size)
    assert x.shape == (50, 3, image_size, image_size) and x.dtype == torch.float32
    assert y.shape == (50,) and y.dtype == torch.int64
    assert len(c) == 50
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.std()) > 0.1                   # real images, not a constant
    assert set(y.tolist()) <= set(range(10))


def test_empty_render():
    x, y, c = render_world(0, seed=0)
    assert x.shape == (0, 3, 28, 28) and y.numel() == 0 and c == []


def test_labels_are_balanced_within_a_chunk():
    _, y, _ = render_world(CHUNK, seed=3)
    counts = torch.bincount(y, minlength=10)
    assert int(counts.min()) >= CHUNK // 10 and int(counts.max()) <= CHUNK // 10 + 1


def _digit_words_in(caption: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", caption.lower()) if w in DIGIT_WORDS}


def test_every_caption_names_exactly_the_label_word(world):
    _, y, captions = world
    for label, caption in zip(y.tolist(), captions):
        assert _digit_words_in(caption) == {DIGIT_WORDS[label]}, caption
        numerals = re.findall(r"\d", caption)
        assert numerals in ([], [str(label)]), caption


def test_plain_background_words_match_the_pixels(big_world):
    # "... on a black background." / "... on a white background." must describe the border pixels.
    x, _, captions = big_world
    border = torch.cat([x[:, :, :2].flatten(1), x[:, :, -2:].flatten(1)], 1).mean(1)   # (N,) mean of top/bottom rows
    for word, check in (("black", lambda v: v < 0.3), ("white", lambda v: v > 0.7)):
        idx = [i for i, c in enumerate(captions) if c.endswith(f"on a {word} background.")]
        assert len(idx) >= 5, f"too few '{word} background' captions to check"
        assert float(check(border[idx].median())), (word, border[idx])


def test_caption_vocabulary_is_small_and_covers_the_eval_templates(big_world):
    _, _, captions = big_world
    vocab = {w for c in captions for w in re.findall(r"[a-z]+", c)}
    assert len(vocab) < 70, sorted(vocab)
    world_templates = {t.replace("{w}", "{}") for group in WORLD_TEMPLATES.values() for t, _ in group}
    assert set(DIGIT_TEMPLATES) <= world_templates
    # and the eval templates really occur in sampled captions
    for t in DIGIT_TEMPLATES:
        assert any(re.fullmatch(re.escape(t).replace(r"\{\}", "[a-z]+"), c) for c in captions), t


def test_font_split_is_fixed_disjoint_and_complete():
    assert set(TRAIN_FONTS).isdisjoint(HELDOUT_FONTS)
    assert "hand" in TRAIN_FONTS and "hand" not in HELDOUT_FONTS
    assert set(TRAIN_FONTS) - {"hand"} | set(HELDOUT_FONTS) == set(FONTS)
    assert len(HELDOUT_FONTS) == 5 and len(TRAIN_FONTS) == 18
    assert resolve_fonts("heldout") == HELDOUT_FONTS
    with pytest.raises(ValueError, match="unknown font"):
        resolve_fonts(["NoSuchFont"])
    with pytest.raises(ValueError):
        resolve_fonts("sometimes")


def test_every_font_renders_ten_distinct_digits():
    masks, owner, names = glyph_bank(tuple(FONTS), 64)            # (G,10,64,64), one row per real font
    assert masks.shape == (len(FONTS), 10, 64, 64)
    ink = masks.sum((2, 3))                                       # (G,10)
    assert bool((ink > 20).all()), "a font rendered an empty digit"
    flat = masks.flatten(2)
    for g in range(len(FONTS)):
        d = torch.cdist(flat[g], flat[g])                          # (10,10) distances between digits
        off = d[~torch.eye(10, dtype=torch.bool)]
        assert float(off.min()) > 1.0, f"font {names[g]} draws two digits identically"


def test_heldout_fonts_render_and_differ_from_train_fonts():
    xh, _, _ = render_world(64, seed=2, fonts="heldout")
    xt, _, _ = render_world(64, seed=2, fonts="train")
    assert xh.shape == xt.shape and not torch.equal(xh, xt)


def test_stream_is_deterministic_resumable_and_matches_chunks():
    s1, s2 = iter(WorldStream(seed=4)), iter(WorldStream(seed=4))
    (a0, c0), (a1, _) = next(s1), next(s1)
    b0, d0 = next(s2)
    assert a0.shape == (128, 3, 28, 28) and len(c0) == 128
    assert torch.equal(a0, b0) and c0 == d0 and not torch.equal(a0, a1)
    resumed, _, _ = WorldStream(seed=4, start=1).next_labelled()
    assert torch.equal(resumed, a1)
    x, _, _ = render_world(2 * CHUNK, seed=4)
    assert torch.equal(x[CHUNK:], a1)


def test_stream_batch_size_and_image_size():
    x, y, c = WorldStream(seed=0, batch_size=16, image_size=32, fonts="heldout").next_labelled()
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,) and len(c) == 16


def test_derived_seeds_are_distinct():
    seeds = {derive_seed(0, k) for k in range(100)} | {derive_seed(1, k) for k in range(100)}
    assert len(seeds) == 200


def test_mnist_like_share_is_white_on_black():
    # About a third of the world should look like MNIST: dark border, bright centre.
    x, _, _ = compose_batch(512, seed=9)
    grey = x.mean(1)                                                   # (B,S,S)
    border = torch.cat([grey[:, :3].flatten(1), grey[:, -3:].flatten(1)], 1).mean(1)
    centre = grey[:, 8:20, 8:20].amax((1, 2))
    share = float(((border < 0.15) & (centre > 0.6)).float().mean())
    assert 0.25 < share < 0.6, share
