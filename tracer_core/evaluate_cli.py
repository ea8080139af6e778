"""``python -m tracer_core eval``: the zero-shot row of a paper table, stored as a run of method "zeroshot".

    python -m tracer_core eval --model ViT-B-16 --pretrained openai \\
        --sets imagenet,imagenet_v2,imagenet_sketch,imagenet_r,imagenet_a,objectnet

It is the ``zeroshot`` preset (no training step: the pretrained model, or a checkpoint given as
``--pretrained PATH``, evaluated with the class-prompt head) through the same checks, store writer and
summary as ``train``; the first set is the class reference of the others unless ``--train-set`` names one.
"""
from __future__ import annotations

import argparse

EVERY_IMAGE = 2**31 - 1   # data.max_eval_samples meaning "no cap"


def eval_overrides(args) -> list[str]:
    """The dotted config overrides the command line stands for (``--set`` ones last, so they win)."""
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    out = [f"model.name={args.model}", f"model.pretrained={args.pretrained}",
           f"data.eval_sets={','.join(sets)}", f"data.train_set={args.train_set or (sets[0] if sets else '')}",
           f"name={args.name or f'zeroshot {args.model} {args.pretrained}'}", "train.similarity_probe=0"]
    if args.max_samples is None:      # the paper row scores every image (the config default caps at 1000)
        out.append(f"data.max_eval_samples={EVERY_IMAGE}")
    for key, value in (("data.datasets_file", args.datasets), ("data.templates", args.templates),
                       ("data.eval_batch_size", args.batch_size), ("data.max_eval_samples", args.max_samples),
                       ("train.device", args.device)):
        if value not in (None, ""):
            out.append(f"{key}={value}")
    return out + list(args.set)


def cmd_eval(args, cmd_train) -> int:
    """``cmd_train`` comes from cli.py (passed in, so this module does not import its importer)."""
    train_args = argparse.Namespace(preset="zeroshot", config=None, set=eval_overrides(args), json=args.json,
                                    quiet=args.quiet, no_store=args.no_store, out=None)
    return cmd_train(train_args)


def add_eval_command(sub, cmd_train) -> None:
    e = sub.add_parser("eval", help="zero-shot evaluation of an open_clip model or checkpoint on declared sets "
                                    "(lands in the run store as a zeroshot run)",
                       epilog="Sets are registered or declared names (README: 'Datasets on disk').")
    e.add_argument("--model", default="ViT-B-16", help="open_clip architecture, or tiny-vit (default ViT-B-16)")
    e.add_argument("--pretrained", "--checkpoint", default="openai", dest="pretrained",
                   help="open_clip pretrained tag (already in the cache), 'embedded', or a checkpoint file")
    e.add_argument("--sets", required=True, help="comma-separated evaluation sets, e.g. imagenet,imagenet_r")
    e.add_argument("--train-set", default="", help="class reference for the checks (default: the first set)")
    e.add_argument("--datasets", default="", help="datasets file (default $TRACER_DATASETS or <data dir>/datasets.json)")
    e.add_argument("--templates", default="", help="openai80 | reference86 | short | a file (default: per set)")
    e.add_argument("--batch-size", type=int, default=None, help="evaluation batch (data.eval_batch_size)")
    e.add_argument("--max-samples", type=int, default=None, help="images per set (data.max_eval_samples; default every image)")
    e.add_argument("--device", default="", help="auto | cpu | cuda[:N]")
    e.add_argument("--name", default="", help="run name (default 'zeroshot MODEL TAG')")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config override")
    e.add_argument("--json", action="store_true", help="print one JSON object with the results")
    e.add_argument("--quiet", action="store_true", help="no progress output")
    e.add_argument("--no-store", action="store_true", help="do not write the run to the run store")
    e.set_defaults(func=lambda args: cmd_eval(args, cmd_train))
