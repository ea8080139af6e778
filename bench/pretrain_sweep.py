"""Which pretraining gives the benchmark its shape? Sweep pretraining length and the world's share of
MNIST-like samples, then fine-tune each checkpoint with FT / FLYP / TRACER (WMA) / TRACER (EMA).

    python bench/pretrain_sweep.py --variants 800:0.35 3000:0.15 --device cuda

Prints one table row per (variant, method): zero-shot and final accuracy per eval set, and the
normalised AUC of KL(teacher||student) for the teacher runs. Used once to choose the shipped checkpoint
(see README, "Embedded default"); not part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracer_core.config import load_preset  # noqa: E402
from tracer_core.training import Hooks, run  # noqa: E402


class FirstEval(Hooks):
    def __init__(self):
        self.first = None

    def on_eval(self, report):
        if self.first is None:
            self.first = report.metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["3000:0.35"], help="steps:p_mnist_like")
    ap.add_argument("--methods", nargs="+", default=["ft", "flyp", "tracer", "tracer_ema"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="/tmp/pretrain_sweep")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    import tracer_core.data.world as world
    from tracer_core.pretrain import pretrain
    rows = []
    for v in args.variants:
        steps, p = v.split(":")
        world.P_MNIST_LIKE = float(p)
        world._bank.cache_clear()
        ckpt = Path(args.out) / f"tiny-vit_{steps}_{p}.safetensors"
        card = pretrain(steps=int(steps), device=args.device, out=str(ckpt), log_every=0)
        for m in args.methods:
            cfg = load_preset(m, [f"model.pretrained={ckpt}", f"train.device={args.device}"] + args.set)
            hook = FirstEval()
            s = run(cfg, hook)
            kl = s.summaries.get("teacher_student_kl/combined", {})
            row = {"variant": v, "method": m, "zs": {k: round(x["accuracy"], 3) for k, x in hook.first.items()},
                   "final": {k: round(x["accuracy"], 3) for k, x in s.final_eval.items()},
                   "kl_auc": kl.get("auc_normalized"), "sec_per_step": round(1 / s.steps_per_s, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(json.dumps({"variant": v, "card_zero_shot": card["zero_shot"]}), flush=True)


if __name__ == "__main__":
    main()
