"""The command shown under each run rebuilds exactly that run's config (through the shell and the CLI parser)."""
import shlex

import pytest

from tracer_core.cli import build_parser
from tracer_core.config import RunConfig, list_presets, load_preset
from tracer_core.reproduce import cli_command, override_args

TRICKY = ['name=a, b; "c" $HOME \'d\'', 'tags=["demo", "x,y", "true", "1e-4"]', "teacher.beta=0.3",
          "optim.lr=1e-30", "train.eval_at_start=false", 'data.eval_sets=["mnist"]', "model.cache_dir=",
          "model.pretrained=/tmp/my ckpt.safetensors", "method_params.ft2b_ops=[\"affine\"]"]


def _from_command(command: str) -> RunConfig:
    argv = shlex.split(command.replace("\\\n", " "))                 # what the shell hands the CLI
    assert argv[:4] == ["python", "-m", "tracer_core", "train"]
    args = build_parser().parse_args(argv[3:])
    return load_preset(args.preset, args.set)


@pytest.mark.parametrize("preset", list_presets())
def test_command_rebuilds_the_config_of_every_preset(preset):
    cfg = load_preset(preset, TRICKY)
    assert _from_command(cli_command(cfg)) == cfg
    assert _from_command(cli_command(cfg.to_dict())) == cfg              # from the store's config JSON too
    assert _from_command(cli_command(cfg.to_json())) == cfg


def test_only_changed_keys_are_listed_and_torchrun_form():
    cfg = load_preset("tracer", ["teacher.beta=0.3", "train.steps=30"])
    preset, overrides = override_args(cfg)
    assert preset == "tracer" and overrides == ["teacher.beta=0.3", "train.steps=30"]
    assert override_args(load_preset("ft")) == ("ft", [])
    assert cli_command(cfg, nproc=4).startswith("torchrun --nproc_per_node=4 -m tracer_core train --preset tracer")


def test_config_without_a_known_preset_starts_from_its_method():
    cfg = RunConfig.from_dict({**load_preset("carot").to_dict(), "preset": "", "name": "mine"})
    preset, overrides = override_args(cfg)
    assert preset == "carot" and set(overrides) == {"preset=", "name=mine"}
    assert _from_command(cli_command(cfg)) == cfg
