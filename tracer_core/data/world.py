"""The procedural pretraining world: captioned digit images composed in torch from cached glyph masks.

One sample = a glyph (font or hand-drawn variant, see ``glyphs.py``) -> stroke thickness (max-pool
dilation / erosion) -> random affine (scale, aspect, rotation, shear, translation) -> ink colour over a
background (plain, gradient, stripes, checker, noise) -> optional blur and pixel noise. About a third of
the samples are "MNIST-like" (light, thick, centred strokes on black, mostly hand-drawn), which is what
lets zero-shot knowledge transfer to real handwriting. Captions are drawn from ``vocab.WORLD_TEMPLATES``
and only state what is true of the image (its colour words, background, style).

Determinism: the images of chunk k (CHUNK samples) depend only on (seed, k), so the same seed gives
bitwise-identical output on one machine, and ``render_world(n)`` is a prefix of ``render_world(m > n)``.
"""
from __future__ import annotations

import functools
import random
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .glyphs import GLYPH_FILL, glyph_bank, resolve_fonts, style_word
from .vocab import COLOUR_NAMES, COLOURS, DIGIT_WORDS, TEXTURES, WORLD_TEMPLATES

CHUNK = 128                 # samples per independently seeded chunk
P_MNIST_LIKE = 0.30         # share of white-on-black, thick, centred samples
P_HAND = (0.2, 0.6)         # chance of a hand-drawn glyph for (other, MNIST-like) samples when "hand" is in the fonts
PALETTE = torch.tensor([COLOURS[c] for c in COLOUR_NAMES])          # (C, 3)
_LUMA = PALETTE @ torch.tensor([0.299, 0.587, 0.114])                # (C,)
_WHITE, _BLACK = COLOUR_NAMES.index("white"), COLOUR_NAMES.index("black")


def derive_seed(seed: int, *keys: int) -> int:
    """Mix a user seed with integer keys (chunk index, dataset tag) into an independent 63-bit seed."""
    state = np.random.SeedSequence([seed % 2**64, *keys]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def mask_size(image_size: int) -> int:
    """Glyph mask resolution: at least twice the output so the 2x supersampled affine stays sharp."""
    return int(min(max(64, 2 * image_size), 256))


@functools.lru_cache(maxsize=8)
def _bank(fonts: tuple[str, ...], size: int):
    """Glyph masks plus per-row sampling tables (cached per font list and size)."""
    masks, owner, names = glyph_bank(fonts, size)                       # (G,10,R,R), (G,)
    is_hand = torch.tensor([names[i] == "hand" for i in owner.tolist()])
    # Per-row weight so every real font counts once and "hand" as a whole counts as one font.
    per_font = torch.bincount(owner, minlength=len(names)).float()
    w_font = (1.0 / per_font[owner]) * (~is_hand)
    w_hand = (1.0 / per_font[owner]) * is_hand
    # Erosion is only allowed where it keeps at least half of the ink (thin serif fonts would vanish).
    eroded = -_dilate3(-masks.flatten(0, 1)[:, None])
    keep = (eroded.sum((1, 2, 3)) / masks.flatten(0, 1).sum((1, 2)).clamp_min(1e-6)).view(masks.shape[:2])
    return masks, owner, names, w_font, w_hand, keep > 0.5


def _pick_rows(w_font, w_hand, p_hand, gen) -> torch.Tensor:
    """(B,) glyph rows: hand-drawn with probability p_hand (per sample) when available, else a font."""
    B = p_hand.shape[0]
    font_rows = torch.multinomial(w_font if w_font.sum() > 0 else w_hand, B, True, generator=gen)
    hand_rows = torch.multinomial(w_hand if w_hand.sum() > 0 else w_font, B, True, generator=gen)
    use_hand = (torch.rand(B, generator=gen) < p_hand) & (w_hand.sum() > 0)
    return torch.where(use_hand, hand_rows, font_rows)


def _dilate3(m: torch.Tensor) -> torch.Tensor:
    """3x3 max filter on (B,1,R,R) as two 3-tap passes (F.max_pool2d is ~10x slower on CPU here)."""
    x = F.pad(m, (1, 1, 1, 1))
    x = torch.maximum(torch.maximum(x[..., :-2], x[..., 1:-1]), x[..., 2:])       # (B,1,R+2,R)
    return torch.maximum(torch.maximum(x[..., :-2, :], x[..., 1:-1, :]), x[..., 2:, :])


def _thicken(m: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """m (B,1,R,R), level (B,) in 0..4 = erode, keep, dilate 3x3, 5x5, 7x7 (repeated 3x3 max filters)."""
    d3 = _dilate3(m)
    d5 = _dilate3(d3)
    variants = torch.stack([-_dilate3(-m), m, d3, d5, _dilate3(d5)])            # (5,B,1,R,R)
    return variants[level, torch.arange(m.shape[0])]


def _affine(m: torch.Tensor, mnist_like: torch.Tensor, S: int, gen) -> torch.Tensor:
    """Warp glyph masks (B,1,R,R) into (B,1,S,S): digit height, aspect, rotation, shear, shift."""
    B = m.shape[0]
    u = torch.rand(B, 6, generator=gen)
    ml = mnist_like.float()
    height = torch.lerp(0.40 + 0.55 * u[:, 0], 0.62 + 0.16 * u[:, 0], ml)   # digit height / image height
    aspect = torch.lerp(0.8 + 0.4 * u[:, 1], 0.85 + 0.25 * u[:, 1], ml)
    angle = torch.randn(B, generator=gen) * torch.lerp(torch.full((B,), 0.21), torch.full((B,), 0.14), ml)
    angle = angle.clamp(-0.6, 0.6)                                            # radians (~±35°)
    shear = (u[:, 2] - 0.5) * torch.lerp(torch.full((B,), 0.6), torch.full((B,), 0.4), ml)
    room = (1 - height) * 0.9                                                 # keep the digit inside
    shift = (u[:, 3:5] - 0.5) * 2 * room[:, None] * (1 - 0.85 * ml[:, None])  # (B,2), MNIST-like ~centred
    k = height / GLYPH_FILL
    cos, sin = angle.cos(), angle.sin()
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)       # (B,2,2)
    shr = torch.eye(2).repeat(B, 1, 1)
    shr[:, 0, 1] = shear
    A = rot @ shr @ torch.diag_embed(torch.stack([k * aspect, k], -1))                       # glyph -> image
    A_inv = torch.linalg.inv(A)
    theta = torch.cat([A_inv, -(A_inv @ shift[:, :, None])], 2)                             # (B,2,3) image -> glyph
    grid = F.affine_grid(theta, [B, 1, 2 * S, 2 * S], align_corners=False)
    out = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(out, 2)                                                 # 2x supersampling, (B,1,S,S)


def contrasting_colours(B: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(ink, background) indices (B,) into COLOUR_NAMES that differ clearly in colour and brightness."""
    C = len(COLOUR_NAMES)
    fg = torch.randint(C, (B,), generator=gen)
    cand = torch.randint(C, (B, 8), generator=gen)                     # 8 background candidates each
    ok = ((PALETTE[cand] - PALETTE[fg][:, None]).norm(dim=-1) > 0.6) & \
         ((_LUMA[cand] - _LUMA[fg][:, None]).abs() > 0.15)
    first = ok.float().argmax(1)                                       # first acceptable candidate
    fallback = torch.where(_LUMA[fg] > 0.5, _BLACK, _WHITE)
    return fg, torch.where(ok.any(1), cand[torch.arange(B), first], fallback)


def _colours(mnist_like: torch.Tensor, gen):
    """Ink and background colour indices (B,) plus texture index (B,) into TEXTURES."""
    B = mnist_like.shape[0]
    fg, bg = contrasting_colours(B, gen)
    texture = torch.multinomial(torch.tensor([0.35, 0.15, 0.15, 0.15, 0.2]), B, True, generator=gen)
    invert = torch.rand(B, generator=gen) < 0.1                        # MNIST-like: sometimes black on white
    fg = torch.where(mnist_like, torch.where(invert, _BLACK, _WHITE), fg)
    bg = torch.where(mnist_like, torch.where(invert, _WHITE, _BLACK), bg)
    texture = torch.where(mnist_like, 0, texture)
    return fg, bg, texture


def _background(bg: torch.Tensor, texture: torch.Tensor, S: int, gen) -> torch.Tensor:
    """(B,3,S,S) backgrounds: base colour mixed with a second, lower-contrast colour by a pattern."""
    B = bg.shape[0]
    c1 = (PALETTE[bg] + 0.04 * torch.randn(B, 3, generator=gen)).clamp(0, 1)
    c2 = 0.6 * c1 + 0.4 * PALETTE[torch.randint(len(COLOUR_NAMES), (B,), generator=gen)]
    phi = torch.rand(B, generator=gen) * torch.pi
    freq = 2 + 3 * torch.rand(B, generator=gen)                       # cycles per image
    xs = torch.linspace(-1, 1, S)
    y, x = torch.meshgrid(xs, xs, indexing="ij")                        # (S,S)
    along = x * phi.cos()[:, None, None] + y * phi.sin()[:, None, None]  # (B,S,S)
    f = freq[:, None, None]
    noise = F.interpolate(torch.rand(B, 1, 6, 6, generator=gen), size=(S, S), mode="bilinear",
                          align_corners=False)[:, 0]
    patterns = torch.stack([
        torch.zeros(B, S, S),                                           # plain
        (along + 1) / 2,                                                # gradient
        (torch.sin(torch.pi * f * along) > 0).float(),                  # stripes
        (torch.sin(torch.pi * f * x) * torch.sin(torch.pi * f * y) > 0).float(),  # checker
        noise,                                                          # smooth noise texture
    ])                                                                  # (5,B,S,S)
    a = patterns[texture, torch.arange(B)][:, None].clamp(0, 1)         # (B,1,S,S)
    return c1[:, :, None, None] * (1 - a) + c2[:, :, None, None] * a


def _blur_noise(img: torch.Tensor, mnist_like: torch.Tensor, gen) -> torch.Tensor:
    """Gaussian blur (3 strengths, separable 5-tap) on a random subset, then pixel noise, clamp to [0,1]."""
    B = img.shape[0]
    p_blur = torch.where(mnist_like, 0.5, 0.25)
    level = torch.where(torch.rand(B, generator=gen) < p_blur, torch.randint(1, 4, (B,), generator=gen), 0)
    sigma_noise = torch.where(torch.rand(B, generator=gen) < 0.25, 0.02 + 0.08 * torch.rand(B, generator=gen), 0.0)
    noise = torch.randn(img.shape, generator=gen)
    for lvl, sigma in ((1, 0.5), (2, 0.8), (3, 1.1)):
        idx = (level == lvl).nonzero().flatten()
        if idx.numel():
            t = torch.arange(-2, 3, dtype=torch.float32)
            k = torch.exp(-t ** 2 / (2 * sigma ** 2))
            k = (k / k.sum()).repeat(3, 1)                               # (3,5) one kernel per channel
            x = F.conv2d(F.pad(img[idx], (2, 2, 0, 0), mode="replicate"), k[:, None, None, :], groups=3)
            x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k[:, None, :, None], groups=3)
            img[idx] = x
    return (img + sigma_noise[:, None, None, None] * noise).clamp(0, 1)


def _captions(labels, rows, owner, names, fg, bg, texture, rng: random.Random) -> list[str]:
    """One truthful caption per sample from WORLD_TEMPLATES."""
    out = []
    for i in range(len(labels)):
        font = names[owner[rows[i]]]
        pool = WORLD_TEMPLATES["any"] + WORLD_TEMPLATES["hand" if font == "hand" else "font"]
        template = rng.choices([t for t, _ in pool], weights=[w for _, w in pool])[0]
        tex = TEXTURES[texture[i]]
        out.append(template.format(
            w=DIGIT_WORDS[labels[i]], n=str(labels[i]), c=COLOUR_NAMES[fg[i]],
            bg=COLOUR_NAMES[bg[i]] if tex == "plain" else tex, style=style_word(font)))
    return out


def compose_batch(B: int, seed: int, image_size: int = 28, fonts="train"):
    """One batch from one generator seed: (images (B,3,S,S) float32 [0,1], labels (B,) int64, captions)."""
    S = image_size
    masks, owner, names, w_font, w_hand, may_erode = _bank(tuple(resolve_fonts(fonts)), mask_size(S))
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randperm(B, generator=gen) % 10                     # (B,) class-balanced within a batch
    mnist_like = torch.rand(B, generator=gen) < P_MNIST_LIKE
    rows = _pick_rows(w_font, w_hand, torch.where(mnist_like, P_HAND[1], P_HAND[0]), gen)
    m = masks[rows, labels][:, None]                                     # (B,1,R,R)
    probs = torch.tensor([[.1, .4, .3, .15, .05], [0, .15, .35, .35, .15]])
    level = torch.multinomial(probs[mnist_like.long()], 1, generator=gen)[:, 0]
    level = torch.where((level == 0) & ~may_erode[rows, labels], 1, level)
    m = _affine(_thicken(m, level), mnist_like, S, gen)                  # (B,1,S,S)
    fg, bg, texture = _colours(mnist_like, gen)
    ink = (PALETTE[fg] + 0.04 * torch.randn(B, 3, generator=gen)).clamp(0, 1)[:, :, None, None]
    ink = torch.where(mnist_like[:, None, None, None], ink * (0.8 + 0.2 * torch.rand(B, 1, 1, 1, generator=gen)), ink)
    img = _background(bg, texture, S, gen) * (1 - m) + ink * m           # (B,3,S,S)
    img = _blur_noise(img, mnist_like, gen)
    rng = random.Random(int(torch.randint(2**62, (1,), generator=gen)))
    caps = _captions(labels.tolist(), rows.tolist(), owner.tolist(), names, fg.tolist(), bg.tolist(),
                     texture.tolist(), rng)
    return img.contiguous(), labels, caps


def render_world(n: int, seed: int, image_size: int = 28, fonts: str | Sequence[str] = "train"):
    """n world samples: (images (n,3,S,S) float32 in [0,1], labels (n,) int64, captions list[str]).

    Same seed -> identical output; rendered in CHUNK-sized chunks seeded by (seed, chunk index).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    imgs, labels, caps = [], [], []
    for k in range((n + CHUNK - 1) // CHUNK):
        x, y, c = compose_batch(CHUNK, derive_seed(seed, k), image_size, fonts)
        imgs.append(x), labels.append(y), caps.extend(c)
    if not imgs:
        return torch.zeros(0, 3, image_size, image_size), torch.zeros(0, dtype=torch.long), []
    return torch.cat(imgs)[:n], torch.cat(labels)[:n], caps[:n]


class WorldStream:
    """Endless (images (B,3,S,S), captions) batches for pretraining; batch i depends only on (seed, i).

    ``start`` resumes a stream at a step. ``next_labelled()`` also returns the labels. With
    batch_size == CHUNK, batch i equals chunk i of ``render_world(..., seed)``.
    """

    def __init__(self, seed: int, batch_size: int = 128, image_size: int = 28, fonts="train", start: int = 0):
        self.seed, self.batch_size, self.image_size, self.step = seed, batch_size, image_size, start
        self.fonts = resolve_fonts(fonts)

    def next_labelled(self):
        out = compose_batch(self.batch_size, derive_seed(self.seed, self.step), self.image_size, self.fonts)
        self.step += 1
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        while True:
            images, _, captions = self.next_labelled()
            yield images, captions
