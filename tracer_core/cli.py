"""Command line: ``python -m tracer_core <command>``.

    train --preset NAME [--set key=value ...] [--json]   fine-tune; runs land in the run store
          (data-parallel: torchrun --nproc_per_node=N -m tracer_core train ...; rank 0 writes)
    eval --model M --pretrained TAG --sets a,b,...      zero-shot row on declared sets (evaluate_cli.py)
    presets                                             list presets
    convert-checkpoint OLD NEW                          rewrite an old pickle checkpoint in the safe format
    pretrain [...]                                      pretrain the embedded tiny CLIP (see pretrain.py)
    runs / show / export / delete                       the run store (tracer_core/store/cli.py)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
from pathlib import Path

from .config import ConfigError, list_presets, load_config_file, load_preset, preset_description


def _progress_hooks(total: int, quiet: bool):
    from tqdm import tqdm

    from .training.hooks import Hooks

    class Progress(Hooks):
        def __init__(self):
            self.bar = tqdm(total=total, unit="step", disable=quiet, file=sys.stderr, dynamic_ncols=True)

        def on_start(self, info):
            self.bar.total = info.total_steps      # train.steps = 0: T from epochs, known once the data is read
            self.bar.refresh()

        def on_step(self, step, scalars):
            self.bar.update(1)
            kl = scalars.get(("teacher_student_kl", "combined"))
            post = {"loss": f"{scalars[('loss', 'total')]:.3f}"}
            if kl is not None:
                post["kl"] = f"{kl:.4f}"
            self.bar.set_postfix(post, refresh=False)

        def on_eval(self, report):
            accs = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in report.metrics.items())
            if not quiet:
                self.bar.write(f"eval @ step {report.step}: {accs}", file=sys.stderr)

        def on_end(self, summary):
            self.bar.close()

    return Progress()


def _store_writer(cfg, args):
    if args.no_store:
        return None
    try:
        from .store.writer import RunWriter
    except ImportError:   # the store is optional for the bare training path
        return None
    return RunWriter.create(cfg)


def _load_config(args):
    if not args.config:
        return load_preset(args.preset, args.set)
    path = Path(args.config).expanduser()
    if not path.is_file():
        raise ConfigError(f"--config {args.config}: " + ("is a folder; give a RunConfig JSON file" if path.is_dir()
                                                         else "file not found"))
    try:
        return load_config_file(path, args.set)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--config {args.config}: not a JSON file ({e})") from None
    except OSError as e:
        raise ConfigError(f"--config {args.config}: cannot read it ({e.strerror})") from None


def cmd_train(args) -> int:
    from .training import HookList, run
    from .training.distributed import env_world
    from .training.preflight import preflight

    cfg = _load_config(args)
    preflight(cfg, args.out)   # bad --out, train.threads, not enough memory: refused before a run is stored
    rank = env_world()[0]      # under torchrun only rank 0 writes the store and prints (training/distributed.py)
    from .data.runsets import check_run_data
    check_run_data(cfg.data)   # bad paths / class lists / declared sets: refused before a run folder exists
    writer = _store_writer(cfg, args) if rank == 0 else None
    hooks = HookList([_progress_hooks(cfg.train.steps, args.json or args.quiet or rank > 0), writer])
    out_dir = args.out or (str(writer.run_dir) if writer is not None else None)
    if writer is not None:     # `kill PID` (or torchrun tearing the group down): stop after the step, flush
        signal.signal(signal.SIGTERM, lambda signum, frame: writer.stop_from_signal("interrupted"))
    with writer if writer is not None else contextlib.nullcontext():   # closes the run folder's status
        summary = run(cfg, hooks, output_dir=out_dir)
    status = writer.final_status(summary.status) if writer is not None else summary.status   # as stored
    result = {"run_id": getattr(writer, "run_id", None), "status": status, "steps": summary.steps,
              "wall_time_s": round(summary.wall_time_s, 3), "steps_per_s": round(summary.steps_per_s, 3),
              "final_eval": summary.final_eval, "summaries": summary.summaries, "checkpoint": summary.checkpoint,
              "images_per_s": round(summary.images_per_s, 1), "skipped_images": summary.skipped_images}
    if rank > 0:
        return 0 if summary.status == "done" else 1
    if args.json:
        print(json.dumps(result, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    else:
        _print_human(result)
    return 0 if status == "done" else 1      # a run whose rows could not be written is not done


def _print_human(result: dict) -> None:
    print(f"run {result['run_id'] or '(not stored)'}: {result['status']}, {result['steps']} steps in "
          f"{result['wall_time_s']:.1f} s ({result['steps_per_s']:.2f} steps/s, "
          f"{result['images_per_s']:.1f} images/s in the training step)")
    if result["skipped_images"]:
        print(f"  {result['skipped_images']} unreadable train image(s) skipped (series skipped_images/train)")
    for name, metrics in result["final_eval"].items():
        print(f"  {name:<18} acc {metrics['accuracy']:.3f}  ece {metrics['ece']:.3f}")
    kl = result["summaries"].get("teacher_student_kl/combined")
    if kl:
        print("  KL(teacher||student) combined: " + ", ".join(
            f"{k} {v:.4g}" if v is not None else f"{k} -" for k, v in kl.items()))


def cmd_presets(args) -> int:
    for name in list_presets():
        print(f"{name:<14} {preset_description(name)}")
    return 0


def cmd_convert_checkpoint(args) -> int:
    from .training.checkpoint import convert_checkpoint
    out = convert_checkpoint(args.old, args.new)
    print(f"converted: {out} (the old file is unchanged; delete it once the new one opens)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tracer_core", description="TRACER Studio command line")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fine-tune a model (lands in the run store)",
                       epilog="Several GPUs: torchrun --nproc_per_node=N -m tracer_core train ... (data.batch_size "
                              "is the global batch; rank 0 writes the store).")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tracer", help="preset name (see `presets`)")
    src.add_argument("--config", help="a full RunConfig JSON file instead of a preset")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set teacher.beta=0.3 (repeatable)")
    t.add_argument("--json", action="store_true", help="print one JSON object with the results at the end")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--no-store", action="store_true", help="do not write the run to the run store")
    t.add_argument("--out", help="folder for checkpoints (default: the run's folder in the store)")
    t.set_defaults(func=cmd_train)
    sub.add_parser("presets", help="list presets").set_defaults(func=cmd_presets)
    c = sub.add_parser("convert-checkpoint", help="rewrite an old (pickle) training checkpoint you trust in the "
                       "safe safetensors format")
    c.add_argument("old", help="the old .pt checkpoint (read with PyTorch's restricted loader, no code runs)")
    c.add_argument("new", help="the new .safetensors file to write")
    c.set_defaults(func=cmd_convert_checkpoint)
    _add_optional_commands(sub)
    return p


def _add_optional_commands(sub) -> None:
    try:
        from .store.cli import add_store_commands
        add_store_commands(sub)
    except ImportError:
        pass
    from .evaluate_cli import add_eval_command
    add_eval_command(sub, cmd_train)
    try:
        from .pretrain import add_pretrain_command
        add_pretrain_command(sub)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:   # DataError, CheckpointError, bad paths
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:                       # TrainingError (e.g. a non-finite loss)
        print(f"training failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
