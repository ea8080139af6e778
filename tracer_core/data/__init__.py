"""Dataset registry: the digit benchmark (MNIST family, sklearn digits, held-out fonts), the procedural
pretraining world, a synthetic test set, and user image folders / FLYP caption tables.

    from tracer_core.data import load_dataset, list_datasets
    ds = load_dataset("mnist", split="train", image_size=28)
    image, label = ds[0]            # (3,28,28) float in [0,1], int
    ds.classnames, ds.templates     # ["zero", ..., "nine"], ["a photo of the digit {}.", ...]
"""
from .digits import CORRUPTIONS
from .base import DataError, ImageSet, TensorImageSet, caption_for
from .files import FileImageSet
from .glyphs import HELDOUT_FONTS, TRAIN_FONTS
from .registry import dataset_info, list_datasets, load_dataset
from .vocab import DIGIT_TEMPLATES, DIGIT_WORDS
from .world import WorldStream, render_world

__all__ = [
    "DataError", "ImageSet", "TensorImageSet", "FileImageSet", "caption_for",
    "list_datasets", "dataset_info", "load_dataset",
    "render_world", "WorldStream", "TRAIN_FONTS", "HELDOUT_FONTS", "DIGIT_WORDS", "DIGIT_TEMPLATES",
    "CORRUPTIONS",
]
