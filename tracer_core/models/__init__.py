"""CLIP models: open_clip architectures plus the built-in tiny config, one interface."""
from .checkpoint_io import CheckpointError, load_state_dict_file, read_state_dict
from .clip import BUILTIN, ClipModel, build_model, count_parameters, embedded_checkpoint
from .freezing import apply_layer_freezing

__all__ = ["BUILTIN", "CheckpointError", "ClipModel", "apply_layer_freezing", "build_model",
           "count_parameters", "embedded_checkpoint", "load_state_dict_file", "read_state_dict"]
