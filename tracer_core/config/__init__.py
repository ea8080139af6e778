"""Run configuration as data: frozen dataclasses, named JSON presets, dotted overrides.

Torch-free on purpose (``tracer_core.api`` imports it and must stay fast to import).

A run is fully described by one :class:`RunConfig`. Presets in ``tracer_core/configs/*.json`` are
*partial* dictionaries laid over the defaults; overrides such as ``teacher.beta=0.3`` are applied
last. Unknown keys and values of the wrong type are rejected with a message that names the key.
Defaults are the embedded default scenario (tiny CLIP on handwritten digits, CPU, minutes); the
numerics follow ``shared/reference/tracer_algorithm.md`` (sections cited per field).

The package, in import order: ``checks`` (ConfigError, range and number checks), ``sections`` (one
dataclass per section, with its defaults and validation), ``parsing`` (dicts -> dataclasses with strict
type/key checks, dotted keys), ``run`` (RunConfig), ``loading`` (presets, config files, overrides).
Import the names from here: ``from tracer_core.config import RunConfig, load_preset``.
"""
from .checks import SEED_MAX, ConfigError
from .loading import (PRESET_DIR, apply_overrides, list_presets, load_config_file, load_preset,
                      preset_description)
from .parsing import flatten, parse_value
from .run import RunConfig
from .sections import (FT2B_OPS, METHODS, TEACHER_KINDS, DataConfig, LossConfig, MethodParamsConfig,
                       ModelConfig, OptimConfig, TeacherConfig, TrainConfig)

__all__ = ["ConfigError", "SEED_MAX", "PRESET_DIR", "apply_overrides", "list_presets", "load_config_file",
           "load_preset", "preset_description", "flatten", "parse_value", "RunConfig", "FT2B_OPS", "METHODS",
           "TEACHER_KINDS", "DataConfig", "LossConfig", "MethodParamsConfig", "ModelConfig", "OptimConfig",
           "TeacherConfig", "TrainConfig"]
