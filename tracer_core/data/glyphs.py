"""Digit glyph masks: matplotlib's bundled fonts plus procedurally hand-drawn strokes, rendered once.

The world generator composes every image from these cached masks, so rendering text (slow, PIL/FreeType)
happens once per (font, digit) and per-sample work is pure torch.

Font split (fixed; the files ship in every matplotlib wheel under ``mpl-data/fonts/ttf``). Of the 40 files,
22 draw all ten digits properly; the rest are symbol/extension fonts (cmex10, cmsy10, STIXNonUni*, STIXSiz*),
display fonts without digits (DejaVu*Display) or a fallback box (LastResortHE). The 22 are split into
17 training fonts and 5 held-out fonts chosen so every held-out style has a relative in training
(a mono oblique, a serif italic, a bold serif, a sans, a typewriter): the held-out set measures how much
of its font knowledge a model keeps after fine-tuning on handwriting, not a style it never saw.
The pseudo-font ``"hand"`` (jittered pen strokes, 32 variants per digit) is a training font only.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# font name -> (file in mpl-data/fonts/ttf, caption style word)
FONTS: dict[str, tuple[str, str]] = {
    "DejaVuSans": ("DejaVuSans.ttf", "plain"),
    "DejaVuSans-Bold": ("DejaVuSans-Bold.ttf", "bold"),
    "DejaVuSans-Oblique": ("DejaVuSans-Oblique.ttf", "italic"),
    "DejaVuSans-BoldOblique": ("DejaVuSans-BoldOblique.ttf", "bold"),
    "DejaVuSansMono": ("DejaVuSansMono.ttf", "typewriter"),
    "DejaVuSansMono-Bold": ("DejaVuSansMono-Bold.ttf", "bold"),
    "DejaVuSansMono-BoldOblique": ("DejaVuSansMono-BoldOblique.ttf", "bold"),
    "DejaVuSerif": ("DejaVuSerif.ttf", "serif"),
    "DejaVuSerif-Bold": ("DejaVuSerif-Bold.ttf", "bold"),
    "DejaVuSerif-BoldItalic": ("DejaVuSerif-BoldItalic.ttf", "italic"),
    "STIXGeneral": ("STIXGeneral.ttf", "serif"),
    "STIXGeneral-Italic": ("STIXGeneralItalic.ttf", "italic"),
    "STIXGeneral-BoldItalic": ("STIXGeneralBolIta.ttf", "italic"),
    "cmr10": ("cmr10.ttf", "serif"),
    "cmb10": ("cmb10.ttf", "bold"),
    "cmti10": ("cmti10.ttf", "italic"),
    "cmmi10": ("cmmi10.ttf", "italic"),   # old-style figures; normalised to the common height below
    # held-out
    "DejaVuSansMono-Oblique": ("DejaVuSansMono-Oblique.ttf", "typewriter"),
    "DejaVuSerif-Italic": ("DejaVuSerif-Italic.ttf", "italic"),
    "STIXGeneral-Bold": ("STIXGeneralBol.ttf", "bold"),
    "cmss10": ("cmss10.ttf", "plain"),
    "cmtt10": ("cmtt10.ttf", "typewriter"),
}
HELDOUT_FONTS = ["DejaVuSansMono-Oblique", "DejaVuSerif-Italic", "STIXGeneral-Bold", "cmss10", "cmtt10"]
TRAIN_FONTS = [f for f in FONTS if f not in HELDOUT_FONTS] + ["hand"]
HAND_VARIANTS = 32            # jittered hand-drawn variants per digit
GLYPH_FILL = 0.8              # glyph height / mask size; the affine stage scales from there


def font_dir() -> str:
    import matplotlib  # only for the path to its bundled fonts
    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def resolve_fonts(fonts) -> list[str]:
    """'train' | 'heldout' | 'all' | list of names -> list of font names (validated)."""
    if isinstance(fonts, str):
        table = {"train": TRAIN_FONTS, "heldout": HELDOUT_FONTS, "all": list(FONTS) + ["hand"]}
        if fonts not in table:
            raise ValueError(f"fonts must be 'train', 'heldout', 'all' or a list of names, got {fonts!r}")
        return list(table[fonts])
    names = list(fonts)
    unknown = [f for f in names if f != "hand" and f not in FONTS]
    if unknown or not names:
        raise ValueError(f"unknown font(s) {unknown or names}; known: {list(FONTS) + ['hand']}")
    return names


def _fit(canvas: np.ndarray, size: int) -> np.ndarray:
    """Crop the ink's bounding box and centre it in a (size, size) mask, height = GLYPH_FILL * size."""
    ys, xs = np.nonzero(canvas > 16)
    crop = Image.fromarray(canvas[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1])
    h, w = crop.height, crop.width
    scale = min(GLYPH_FILL * size / h, 0.95 * size / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    crop = crop.resize((nw, nh), Image.Resampling.LANCZOS)
    out = Image.new("L", (size, size), 0)
    out.paste(crop, ((size - nw) // 2, (size - nh) // 2))
    return np.asarray(out, dtype=np.float32) / 255.0


def _render_font(path: str, size: int) -> np.ndarray:
    """(10, size, size) float masks of the digits 0-9 in one TrueType file."""
    font = ImageFont.truetype(path, 3 * size)
    masks = []
    for d in range(10):
        canvas = Image.new("L", (6 * size, 6 * size), 0)
        ImageDraw.Draw(canvas).text((size, size), str(d), font=font, fill=255)
        masks.append(_fit(np.asarray(canvas), size))
    return np.stack(masks)


# Pen-stroke skeletons in a unit box (x right, y down). Each digit: list of (points, smooth) strokes;
# smooth strokes are Catmull-Rom splines through the points, the others straight polylines.
_SKELETONS: dict[int, list[list[tuple[list[tuple[float, float]], bool]]]] = {
    0: [[([(.5, 0), (.12, .25), (.12, .75), (.5, 1), (.88, .75), (.88, .25), (.5, 0), (.12, .25)], True)]],
    1: [[([(.5, 0), (.5, 1)], False)], [([(.25, .2), (.5, 0), (.5, 1)], False)]],
    2: [[([(.1, .25), (.35, .02), (.7, .03), (.88, .28), (.7, .55), (.1, 1)], True), ([(.1, 1), (.95, 1)], False)],
        [([(.12, .3), (.4, 0), (.8, .1), (.75, .45), (.12, .98), (.6, .9), (.95, .97)], True)]],
    3: [[([(.1, .12), (.5, 0), (.85, .2), (.75, .42), (.42, .5)], True),
         ([(.42, .5), (.85, .62), (.85, .88), (.5, 1), (.08, .88)], True)],
        [([(.1, 0), (.85, 0), (.4, .42), (.85, .62), (.8, .9), (.45, 1), (.08, .88)], False)]],
    4: [[([(.72, 1), (.72, 0), (.05, .7), (.95, .7)], False)],
        [([(.15, 0), (.1, .6), (.92, .6)], False), ([(.72, .2), (.72, 1)], False)]],
    5: [[([(.85, 0), (.22, 0), (.16, .45)], False),
         ([(.16, .45), (.55, .38), (.85, .6), (.78, .9), (.45, 1), (.1, .9)], True)]],
    6: [[([(.78, .02), (.45, .1), (.2, .42), (.15, .75), (.38, 1), (.72, .95), (.85, .72), (.65, .52),
           (.38, .52), (.17, .7)], True)]],
    7: [[([(.05, 0), (.95, 0), (.38, 1)], False)], [([(.05, .05), (.95, 0), (.4, 1)], False), ([(.3, .5), (.8, .5)], False)]],
    8: [[([(.5, .48), (.8, .25), (.5, 0), (.2, .25), (.5, .48), (.85, .74), (.5, 1), (.15, .74), (.5, .48)], True)]],
    9: [[([(.85, .28), (.6, .03), (.25, .08), (.15, .32), (.4, .5), (.78, .42), (.85, .28)], True),
         ([(.85, .28), (.8, .7), (.6, 1)], True)],
        [([(.85, .3), (.55, .02), (.2, .15), (.25, .45), (.6, .5), (.85, .3)], True), ([(.85, .3), (.85, 1)], False)]],
}


def _catmull_rom(points: np.ndarray, steps: int = 12) -> np.ndarray:
    """(P, 2) control points -> (~P*steps, 2) points on the Catmull-Rom spline through them."""
    p = np.concatenate([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, steps, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return np.concatenate(out + [points[-1:]])


def _render_hand(digit: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One jittered hand-drawn digit: pick a skeleton variant, jitter its points, slant, draw with a pen."""
    variants = _SKELETONS[digit]
    strokes = variants[rng.integers(len(variants))]
    big = 4 * size
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    aspect, slant = rng.uniform(0.55, 0.85), rng.uniform(-0.12, 0.35)  # slant > 0 leans right, as most handwriting
    width = int(rng.uniform(0.07, 0.15) * 2 * size)
    for pts, smooth in strokes:
        p = np.asarray(pts, dtype=np.float64) + rng.normal(0, 0.035, (len(pts), 2))
        line = _catmull_rom(p) if smooth else p
        # unit box -> canvas: x scaled by aspect, slanted by the y offset from the middle
        x = (0.5 + (line[:, 0] - 0.5) * aspect - slant * (line[:, 1] - 0.5)) * 2 * size + size
        y = line[:, 1] * 2 * size + size
        xy = list(zip(x.tolist(), y.tolist()))
        draw.line(xy, fill=255, width=width, joint="curve")
        for cx, cy in (xy[0], xy[-1]):  # round pen caps
            draw.ellipse([cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2], fill=255)
    return _fit(np.asarray(canvas), size)


@functools.lru_cache(maxsize=8)
def glyph_bank(fonts: tuple[str, ...], size: int) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Masks for the given fonts: (masks (G, 10, size, size) float [0,1], font_of_row (G,), names).

    A real font is one row; "hand" adds HAND_VARIANTS rows (fixed seed: the bank is the same for every
    world seed, seeds only change the composition). Cached: built once per process and size.
    """
    rows, owner = [], []
    for i, name in enumerate(fonts):
        if name == "hand":
            rng = np.random.default_rng(12345)
            for _ in range(HAND_VARIANTS):
                rows.append(np.stack([_render_hand(d, size, rng) for d in range(10)]))
                owner.append(i)
        else:
            rows.append(_render_font(os.path.join(font_dir(), FONTS[name][0]), size))
            owner.append(i)
    return torch.from_numpy(np.stack(rows)), torch.tensor(owner), tuple(fonts)


def style_word(font: str) -> str:
    return "handwritten" if font == "hand" else FONTS[font][1]

