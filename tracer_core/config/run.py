"""RunConfig: a whole run as one frozen dataclass of the sections, with its dict/JSON conversions."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .checks import check, check_numbers
from .parsing import build, set_dotted
from .sections import (METHODS, DataConfig, LossConfig, MethodParamsConfig, ModelConfig, OptimConfig,
                       TeacherConfig, TrainConfig)


@dataclass(frozen=True)
class RunConfig:
    name: str = ""
    preset: str = ""
    method: str = "flyp"
    tags: tuple[str, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method_params: MethodParamsConfig = field(default_factory=MethodParamsConfig)

    def __post_init__(self) -> None:
        check(self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}")
        for section in ("model", "data", "loss", "teacher", "optim", "train", "method_params"):
            check_numbers(section, getattr(self, section))
            getattr(self, section).validate()
        check(not (self.loss.lambda_sd > 0 and self.teacher.kind == "none"),
              "loss.lambda_sd > 0 needs a teacher: set teacher.kind to frozen, ema or wma")

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        return build(cls, d, prefix="")

    def replace(self, **overrides: Any) -> "RunConfig":
        """Dotted-key replacement with type checking: ``cfg.replace(**{"teacher.beta": 0.3})``."""
        d = self.to_dict()
        for key, value in overrides.items():
            set_dotted(d, key, value, parse_strings=False)
        return RunConfig.from_dict(d)
