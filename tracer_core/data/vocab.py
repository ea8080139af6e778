"""The small shared vocabulary of the digit world: class words, colours, prompt templates.

Zero-shot transfer only works if the words the pretraining captions use are the words the evaluation
prompts use, so every digit dataset and the world generator read their names and templates from here.
"""
from __future__ import annotations

# Class names of every digit set, index = digit. The world's captions use exactly these words.
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# Prompt templates of the digit sets ("{}" = class word). Each one is also a world caption template
# (see WORLD_TEMPLATES), so the pretrained model has seen these exact sentences.
DIGIT_TEMPLATES = [
    "a photo of the digit {}.",
    "a handwritten digit {}.",
    "the number {}.",
    "a picture of the number {}.",
    "the digit {}.",
]

# Named colours (RGB in [0,1]) for digit ink and plain backgrounds; the name appears in captions, so
# the colour drawn must really look like its name (jitter stays small).
COLOURS = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.65, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "orange": (1.00, 0.55, 0.00),
    "purple": (0.55, 0.20, 0.80),
    "pink": (1.00, 0.55, 0.75),
    "white": (1.00, 1.00, 1.00),
    "grey": (0.50, 0.50, 0.50),
    "black": (0.00, 0.00, 0.00),
}
COLOUR_NAMES = list(COLOURS)

# Background kinds; "plain" backgrounds are named by their colour word instead ("a black background").
TEXTURES = ["plain", "gradient", "striped", "checkered", "noisy"]

# Style word per font family, for captions like "the number seven written in bold type.".
STYLE_WORDS = ["plain", "bold", "italic", "serif", "typewriter"]

# World caption templates. Slots: {w} digit word, {n} numeral, {c} ink colour word, {bg} background
# word (colour name or texture), {style} a STYLE_WORDS entry. Every template names the digit word.
# Groups decide when a template is truthful: "any" always; "hand" only for hand-drawn glyphs;
# "font" only for font glyphs. Generic templates carry most weight because evaluation prompts use them.
WORLD_TEMPLATES: dict[str, list[tuple[str, float]]] = {
    "any": [
        ("a photo of the digit {w}.", 3.0),
        ("the number {w}.", 3.0),
        ("a picture of the number {w}.", 3.0),
        ("the digit {w}.", 3.0),
        ("a drawing of the digit {w}.", 1.0),
        ("the digit {w} ({n}).", 1.0),
        ("a {n}, the number {w}.", 1.0),
        ("a {c} digit {w}.", 1.5),
        ("the number {w} in {c}.", 1.0),
        ("a {c} {w} on a {bg} background.", 1.5),
        ("the digit {w} on a {bg} background.", 1.0),
    ],
    "hand": [
        ("a handwritten digit {w}.", 4.0),
        ("the number {w} written by hand.", 2.0),
    ],
    "font": [
        ("the number {w} written in {style} type.", 1.5),
        ("a printed digit {w}.", 1.0),
    ],
}
