"""Dataset registry: the digit benchmark (MNIST family, sklearn digits, held-out fonts), the procedural
pretraining world, a synthetic test set, and user image folders / FLYP caption tables.

    from tracer_core.data import load_dataset, list_datasets
    ds = load_dataset("mnist", split="train", image_size=28)
    image, label = ds[0]            # (3,28,28) float in [0,1], int
    ds.classnames, ds.templates     # ["zero", ..., "nine"], ["a photo of the digit {}.", ...]

The registry functions are imported eagerly and are torch-free; every other name is resolved on first use
(PEP 562), so ``list_datasets()`` / ``dataset_info()`` do not import torch.
"""
import importlib

from .registry import CORRUPTIONS, dataset_info, list_datasets, load_dataset

_LAZY = {"DataError": "base", "ImageSet": "base", "TensorImageSet": "base", "caption_for": "base",
         "FileImageSet": "files", "HELDOUT_FONTS": "glyphs", "TRAIN_FONTS": "glyphs",
         "DIGIT_TEMPLATES": "vocab", "DIGIT_WORDS": "vocab", "render_world": "world", "WorldStream": "world"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value          # next lookups skip this function
    return value


__all__ = [
    "DataError", "ImageSet", "TensorImageSet", "FileImageSet", "caption_for",
    "list_datasets", "dataset_info", "load_dataset",
    "render_world", "WorldStream", "TRAIN_FONTS", "HELDOUT_FONTS", "DIGIT_WORDS", "DIGIT_TEMPLATES",
    "CORRUPTIONS",
]
