"""The analysis pages' computations: calibration, representation similarity, attributions, robustness, WiSE-FT.

Re-exported by :mod:`tracer_core.api` (pages call ``api.reliability_frame(...)``). Like ``api``, this module
imports no torch at module level: the store queries are pure pandas, and the functions that need the models
(:func:`load_checkpoint_models`, :func:`attribution_maps`, :func:`robustness_table`, :func:`wise_curve_frame`)
import :mod:`tracer_core.explain`, the data registry and the robustness/WiSE-FT code on first use.

Model-based results come from a run *checkpoint* (recorded as an artifact; runs save one at the end). The
three models are the run's pretrained θ₀ (rebuilt from its config), the student and the teacher.
"""
from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["CAL_METRICS", "SIM_KINDS", "SIM_PAIRS", "ATTR_METHODS", "NO_CHECKPOINT", "CheckpointModels",
           "AttributionResult", "analysis_runs", "eval_sets_of", "calibration_steps", "reliability_frame",
           "fold_top_bin", "calibration_table", "calibration_trend", "similarity_frame", "checkpoints_for_run",
           "load_checkpoint_models", "eval_set_info", "attribution_maps", "robustness_table", "wise_curve_frame",
           "run_choices", "checkpoint_choices", "keep_valid"]

CAL_METRICS = {"accuracy": "accuracy", "ece": "ECE", "ece_batch": "per-batch ECE (reference protocol)",
               "mce": "MCE", "nll": "NLL (nats)", "brier": "Brier"}
SIM_KINDS = {"linear_cka": "linear CKA", "linear_cka_debiased": "debiased linear CKA", "svcca": "SVCCA"}
SIM_PAIRS = {"student_vs_pretrained": "student vs pretrained", "student_vs_teacher": "student vs teacher",
             "teacher_vs_pretrained": "teacher vs pretrained"}
ATTR_METHODS = {"integrated_gradients": "Integrated Gradients", "saliency": "Saliency", "occlusion": "Occlusion",
                "gradcam": "Grad-CAM"}
MODEL_ROLES = ("pretrained", "student", "teacher")
NO_CHECKPOINT = ("No checkpoint recorded for this run: runs save one at the end (train.save_final) when they "
                 "have an output folder — dashboard and `python -m tracer_core train` runs do. Start a run on "
                 "**Launch** (or the demo on **Home**) and open this page when it has finished.")


# -- runs and their stored analysis data ------------------------------------------------------------------

def _runs(services, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    from tracer_core.api import _runs as runs_with_labels     # lazy: api re-exports this module
    return runs_with_labels(services, run_ids)


def _with_runs(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    return frame.merge(runs[["run_id", "label", "strategy", "teacher"]], on="run_id", how="left")


def _id_set(config_json: str | None) -> str:
    return json.loads(config_json or "{}").get("data", {}).get("train_set", "")


def analysis_runs(services, need: str) -> pd.DataFrame:
    """Runs (label, strategy, status, ...) that have ``need``: "evaluations", "similarities" or "checkpoint"."""
    runs = _runs(services)
    if runs.empty:
        return runs
    ids = runs["run_id"].tolist()
    if need == "evaluations":
        have = set(services.store.evaluations(ids, metrics=["ece"])["run_id"])
    elif need == "similarities":
        have = set(services.store.similarities(ids)["run_id"])
    elif need == "checkpoint":
        art = services.store.artifacts(ids)
        art = art[(art["kind"] == "checkpoint") & art["path"].map(lambda p: Path(p).is_file())]
        have = set(art["run_id"])
    else:
        raise ValueError(f"need must be evaluations, similarities or checkpoint, got {need!r}")
    return runs[runs["run_id"].isin(have)].reset_index(drop=True)


def run_choices(runs: pd.DataFrame, with_status: bool = False) -> dict[str, str]:
    """Options of a run picker, in the frame's order: run_id -> "label — strategy" (+ " (status)")."""
    text = runs["label"] + " — " + runs["strategy"]
    if with_status:
        text = text + " (" + runs["status"] + ")"
    return dict(zip(runs["run_id"], text))


def keep_valid(selection: Sequence | None, choices: Mapping, default: Sequence = ()) -> list:
    """A multiselect's stored value without the keys no longer in ``choices`` (``default`` when unset)."""
    return [k for k in (default if selection is None else selection) if k in choices]


def eval_sets_of(services, run_ids: Sequence[str]) -> list[str]:
    """Evaluation sets of the runs, their in-distribution (train) sets first."""
    if not run_ids:
        return []
    ev = services.store.evaluations(list(run_ids), metrics=["ece"])
    ids = {_id_set(c) for c in _runs(services, run_ids)["config"]}
    return sorted(ev["dataset"].unique(), key=lambda d: (d not in ids, d))


# -- calibration ----------------------------------------------------------------------------------------------

def calibration_steps(services, run_ids: Sequence[str], dataset: str | None = None) -> list[int]:
    """Evaluation steps (union over the runs) with reliability bins."""
    if not run_ids:
        return []
    ev = services.store.evaluations(list(run_ids), datasets=[dataset] if dataset else None, metrics=["ece"])
    return sorted(int(s) for s in ev["step"].unique())


def _steps_at(services, run_ids: Sequence[str], step: int | None, dataset: str | None = None) -> dict[str, int]:
    """run -> the evaluation step shown for slider position ``step``: the latest one <= step (None: last)."""
    ev = services.store.evaluations(list(run_ids), datasets=[dataset] if dataset else None, metrics=["ece"])
    out = {}
    for rid, g in ev.groupby("run_id"):
        s = g["step"] if step is None else g.loc[g["step"] <= step, "step"]
        out[rid] = int((s if len(s) else g["step"]).max())
    return out


def fold_top_bin(bins: pd.DataFrame) -> pd.DataFrame:
    """Merge the confidence == 1.0 bin (lo = hi = 1.0, the (n_bins+1)-th) into the last regular bin
    [lo, 1.0]: counts add, mean confidence and accuracy are count-weighted. ``bins``: one model's bins."""
    top = bins[(bins["lo"] >= 1.0) & (bins["hi"] >= 1.0)]
    if top.empty or len(bins) < 2:
        return bins
    rest = bins.drop(index=top.index).copy()
    last = rest["bin"].idxmax()
    n0, n1 = rest.at[last, "count"], top["count"].sum()
    if n1 > 0:
        for col in ("mean_confidence", "accuracy"):
            v0 = rest.at[last, col] if n0 > 0 else 0.0
            v1 = (top[col].fillna(0) * top["count"]).sum() / n1
            rest.at[last, col] = (v0 * n0 + v1 * n1) / (n0 + n1)
        rest.at[last, "count"] = n0 + n1
    return rest


def reliability_frame(services, run_ids: Sequence[str], dataset: str, step: int | None = None,
                      fold_top: bool = True) -> pd.DataFrame:
    """Reliability bins of one eval set: per run its latest evaluation at or before ``step`` (None: the last).

    Columns: run_id, label, strategy, teacher, step, dataset, model (student/teacher), bin, lo, hi, count,
    share (of the model's images), mean_confidence, accuracy, gap (confidence - accuracy)."""
    cols = ["run_id", "label", "strategy", "teacher", "step", "dataset", "model", "bin", "lo", "hi", "count",
            "share", "mean_confidence", "accuracy", "gap"]
    if not run_ids:
        return pd.DataFrame(columns=cols)
    parts = []
    by_step: dict[int, list[str]] = {}
    for rid, s in _steps_at(services, run_ids, step, dataset).items():
        by_step.setdefault(s, []).append(rid)
    for s, rids in by_step.items():
        parts.append(services.store.reliability(rids, s, [dataset]))
    rel = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if rel.empty:
        return pd.DataFrame(columns=cols)
    if fold_top:
        rel = pd.concat([fold_top_bin(g) for _, g in rel.groupby(["run_id", "model"], sort=False)],
                        ignore_index=True)
    rel["share"] = rel["count"] / rel.groupby(["run_id", "model"])["count"].transform("sum").replace(0, np.nan)
    rel["gap"] = rel["mean_confidence"] - rel["accuracy"]
    order = {r: i for i, r in enumerate(run_ids)}           # panels in the order the runs were chosen
    rel = rel.assign(_o=rel["run_id"].map(order)).sort_values(["_o", "model", "bin"], kind="stable")
    return _with_runs(rel, _runs(services, run_ids))[cols]


def calibration_table(services, run_ids: Sequence[str], step: int | None = None) -> pd.DataFrame:
    """One row per run, eval set and model (student; teacher where evaluated) at each run's latest evaluation
    at or before ``step``: accuracy, ECE, per-batch ECE (reference protocol), MCE, NLL, Brier."""
    cols = ["run", "eval set", "model", "step", *CAL_METRICS.values()]
    if not run_ids:
        return pd.DataFrame(columns=cols)
    ev = services.store.evaluations(list(run_ids))
    if ev.empty:
        return pd.DataFrame(columns=cols)
    at = _steps_at(services, run_ids, step)
    ev = ev[ev["step"] == ev["run_id"].map(at)].copy()
    teacher = ev["metric"].str.startswith("teacher_")
    ev["model"] = np.where(teacher, "teacher", "student")
    ev["metric"] = ev["metric"].str.removeprefix("teacher_")
    ev = ev[ev["metric"].isin(list(CAL_METRICS))]
    wide = ev.pivot_table(index=["run_id", "dataset", "model", "step"], columns="metric", values="value").reset_index()
    runs = _runs(services, run_ids)
    ids = {_id_set(c) for c in runs["config"]}
    wide = wide.merge(runs[["run_id", "label"]], on="run_id", how="left")
    wide["_order"] = [(list(run_ids).index(r), d not in ids, d, m) for r, d, m in
                      zip(wide["run_id"], wide["dataset"], wide["model"])]
    wide = wide.sort_values("_order").rename(columns={"label": "run", "dataset": "eval set", **CAL_METRICS})
    return wide.reindex(columns=cols).reset_index(drop=True)


def calibration_trend(services, run_ids: Sequence[str], dataset: str,
                      metric: str = "ece") -> tuple[pd.DataFrame, list[str]]:
    """One student metric of one eval set over training, and the ID set names (as ``api.eval_frame``)."""
    from tracer_core.api import eval_frame
    ev, id_sets = eval_frame(services, run_ids, metric)
    return ev[ev["dataset"] == dataset].reset_index(drop=True), id_sets


# -- representation similarity ---------------------------------------------------------------------------------

def similarity_frame(services, run_ids: Sequence[str], tower: str = "vision",
                     kind: str = "linear_cka") -> pd.DataFrame:
    """Per-layer similarity rows of one tower and measure: run_id, label, strategy, teacher, step, layer,
    layer_index, pair, value (layers in network order)."""
    cols = ["run_id", "label", "strategy", "teacher", "step", "layer", "layer_index", "pair", "value"]
    if not run_ids:
        return pd.DataFrame(columns=cols)
    sim = services.store.similarities(list(run_ids))
    sim = sim[(sim["tower"] == tower) & (sim["kind"] == kind)]
    if sim.empty:
        return pd.DataFrame(columns=cols)
    sim = _with_runs(sim, _runs(services, run_ids))
    order = {r: i for i, r in enumerate(run_ids)}
    sim = sim.assign(_o=sim["run_id"].map(order)).sort_values(["_o", "step", "layer_index", "pair"])
    return sim[cols].reset_index(drop=True)


# -- checkpoints and their models -------------------------------------------------------------------------------

def checkpoints_for_run(services, run_id: str) -> pd.DataFrame:
    """The run's checkpoints, newest first: step, path, exists, size_mb."""
    art = services.store.artifacts([run_id])
    art = art[art["kind"] == "checkpoint"].drop_duplicates("path", keep="last")
    paths = [Path(p) for p in art["path"]]
    out = pd.DataFrame({"step": art["step"].astype(int).to_numpy(), "path": [str(p) for p in paths],
                        "exists": [p.is_file() for p in paths],
                        "size_mb": [p.stat().st_size / 2**20 if p.is_file() else np.nan for p in paths]})
    return out.sort_values("step", ascending=False).reset_index(drop=True)


def checkpoint_choices(services, run_id: str) -> dict[str, str]:
    """Options of a checkpoint picker: path -> "step N" of the run's checkpoints whose file still exists,
    newest first (the default pick)."""
    ck = checkpoints_for_run(services, run_id)
    return {p: f"step {int(s)}" for p, s, ok in zip(ck["path"], ck["step"], ck["exists"]) if ok}


@dataclass
class CheckpointModels:
    """The pretrained θ₀, student and teacher (None without one) of a run checkpoint, in eval mode.

    ``lock`` serialises computations on the models (Grad-CAM swaps a block; WiSE-FT loads states)."""
    path: str
    models: dict[str, Any]
    tokenizer: Any
    config: dict
    step: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def roles(self) -> list[str]:
        return [r for r in MODEL_ROLES if self.models.get(r) is not None]

    @property
    def id_set(self) -> str:
        return self.config.get("data", {}).get("train_set", "")

    @property
    def eval_sets(self) -> list[str]:
        sets = list(self.config.get("data", {}).get("eval_sets", [])) or [self.id_set]
        return sorted(dict.fromkeys(sets), key=lambda d: d != self.id_set)

    def role_label(self, role: str) -> str:
        kind = self.config.get("teacher", {}).get("kind", "")
        return {"pretrained": "Pretrained θ₀", "student": "Student",
                "teacher": f"Teacher ({kind.upper() if kind in ('ema', 'wma') else kind})"}.get(role, role)


_LOADED: dict[tuple[str, int], CheckpointModels] = {}     # the last few checkpoints, shared by every page
_LOAD_LOCK = threading.Lock()


def load_checkpoint_models(path: str, keep: int = 2) -> CheckpointModels:
    """A run checkpoint's three models on the CPU (raises CheckpointError with a readable message). The last
    ``keep`` checkpoints stay loaded (keyed by path and modification time), so pages share them."""
    from tracer_core.explain import load_checkpoint_bundle
    key = (str(path), Path(path).stat().st_mtime_ns if Path(path).exists() else 0)
    with _LOAD_LOCK:
        if key not in _LOADED:
            b = load_checkpoint_bundle(path, "cpu")
            _LOADED[key] = CheckpointModels(str(path), {r: b[r] for r in MODEL_ROLES}, b["tokenizer"], b["config"],
                                            b["step"])
            while len(_LOADED) > keep:
                _LOADED.pop(next(iter(_LOADED)))
        return _LOADED[key]


@functools.lru_cache(maxsize=16)
def _dataset(name: str, image_size: int, seed: int, max_samples: int | None, path: str):
    from tracer_core.data import load_dataset
    return load_dataset(name, split="test", image_size=image_size, seed=seed, max_samples=max_samples, path=path)


def _eval_set(cm: CheckpointModels, name: str, max_samples: int | None = None):
    data = cm.config.get("data", {})
    n = int(max_samples or data.get("max_eval_samples") or 1000)
    path = data.get("path", "") if name in ("imagefolder", "csv") else ""
    return _dataset(name, int(cm.models["student"].image_size), int(data.get("seed", 0)), n, path)


def eval_set_info(cm: CheckpointModels, dataset: str) -> dict:
    """{"n": images (the run's evaluation prefix), "classnames": [...], "labels": [int, ...]}."""
    ds = _eval_set(cm, dataset)
    tensors = ds.tensors()
    labels = tensors[1].tolist() if tensors is not None else [int(ds[i][1]) for i in range(len(ds))]
    return {"n": len(ds), "classnames": list(ds.classnames), "labels": labels}


# -- attributions ------------------------------------------------------------------------------------------------

@dataclass
class AttributionResult:
    image: np.ndarray                      # (H, W, 3) uint8
    maps: dict[tuple[str, str], np.ndarray]   # (role, method) -> (H, W) in [0, 1] (|attribution|, min-max)
    roles: list[str]
    role_labels: dict[str, str]
    methods: list[str]
    label: int
    target: int
    classnames: list[str]
    predictions: pd.DataFrame              # role, model, predicted, p(predicted), p(target)


def attribution_maps(cm: CheckpointModels, dataset: str, index: int, target: int | None = None,
                     methods: Sequence[str] = tuple(ATTR_METHODS), ig_steps: int = 16) -> AttributionResult:
    """Attribution maps of one image's zero-shot logit for class ``target`` (default: its label), for each
    model of the checkpoint and each method. Maps are shown as |attribution| min-max normalised per map
    (captum's "absolute_value" view); Grad-CAM uses the penultimate ViT block."""
    import torch

    from tracer_core.explain import attribute, normalise_maps, similarity_forward
    from tracer_core.models.zeroshot import class_text_embeddings

    ds = _eval_set(cm, dataset)
    if not 0 <= int(index) < len(ds):
        raise ValueError(f"image index must be in [0, {len(ds) - 1}], got {index}")
    image, label = ds[int(index)]
    target = int(label) if target is None else int(target)
    x = image[None].float()
    maps, preds = {}, []
    with cm.lock, torch.random.fork_rng(devices=[]):
        for role in cm.roles:
            model = cm.models[role]
            for m in methods:
                att = attribute(model, cm.tokenizer, x, ds.classnames, ds.templates, target, method=m,
                                n_steps=int(ig_steps), internal_batch_size=int(ig_steps))
                maps[(role, m)] = normalise_maps(att.abs())[0].numpy()
            with torch.no_grad():
                emb = class_text_embeddings(model, cm.tokenizer, list(ds.classnames), list(ds.templates))
                p = similarity_forward(model, emb)(x).softmax(-1)[0]
            k = int(p.argmax())
            preds.append({"role": role, "model": cm.role_label(role), "predicted": ds.classnames[k],
                          "p(predicted)": float(p[k]), f"p({ds.classnames[target]})": float(p[target])})
    img = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return AttributionResult(img, maps, cm.roles, {r: cm.role_label(r) for r in cm.roles}, list(methods), int(label),
                             target, list(ds.classnames), pd.DataFrame(preds))


# -- robustness and WiSE-FT ------------------------------------------------------------------------------------

def robustness_table(cm: CheckpointModels, dataset: str, eps: float = 4 / 255, steps: int = 5,
                     max_samples: int = 256, attacks: Sequence[str] = ("fgsm", "pgd")) -> pd.DataFrame:
    """Zero-shot accuracy, clean and under L∞ attacks, of each model on the first ``max_samples`` images:
    rows (model, role, attack: clean/FGSM/PGD, accuracy, success_rate, n, eps)."""
    import torch

    from tracer_core.training.robustness import robustness_eval
    ds = _eval_set(cm, dataset, max(int(max_samples), 1))
    rows = []
    with cm.lock, torch.random.fork_rng(devices=[]):
        for role in cm.roles:
            res = robustness_eval(cm.models[role], cm.tokenizer, ds, attacks=tuple(attacks), eps=float(eps),
                                  steps=int(steps), max_samples=int(max_samples))
            base = {"model": cm.role_label(role), "role": role, "n": int(res["n"]), "eps": float(eps)}
            rows.append({**base, "attack": "clean", "accuracy": res["clean_accuracy"], "success_rate": np.nan})
            for a in attacks:
                rows.append({**base, "attack": a.upper(), "accuracy": res[f"{a}_accuracy"],
                             "success_rate": res[f"{a}_success_rate"]})
    return pd.DataFrame(rows, columns=["model", "role", "attack", "accuracy", "success_rate", "n", "eps"])


def _ce_heads(cm: CheckpointModels, id_ds):
    """(head_zs, head_ft, classnames) for runs with a trained linear head (FT-style), else (None, None, None)."""
    import torch

    from tracer_core.models.zeroshot import class_text_embeddings
    from tracer_core.training.checkpoint import load_checkpoint
    extra = (load_checkpoint(cm.path).get("method") or {}).get("extra0") or {}
    w = extra.get("weight")
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[0] != len(id_ds.classnames):
        return None, None, None
    zs = cm.models["pretrained"]
    with torch.no_grad():   # the FT head starts as the zero-shot head with the logit scale baked in
        head_zs = zs.logit_scale.detach() * class_text_embeddings(zs, cm.tokenizer, list(id_ds.classnames),
                                                                  list(id_ds.templates))
    return head_zs, w.float(), list(id_ds.classnames)


def wise_curve_frame(cm: CheckpointModels, id_set: str, ood_sets: Sequence[str], alphas: Sequence[float] | None = None,
                     max_samples: int = 500) -> tuple[pd.DataFrame, pd.DataFrame]:
    """WiSE-FT θ_α = (1 − α) θ₀ + α θ_student for each α: (per-α summary, per-α-and-set rows).

    Summary columns: alpha, id_accuracy, ood_accuracy (mean over ``ood_sets``; NaN without one), id_ece,
    ood_ece. Rows: alpha, dataset, split, accuracy, ece, ... (from ``tracer_core.methods.wise_curve``)."""
    import torch

    from tracer_core.methods import curve_summary, wise_curve
    alphas = [round(float(a), 4) for a in (alphas if alphas is not None else np.linspace(0, 1, 11))]
    sets = {name: _eval_set(cm, name, max_samples) for name in dict.fromkeys([id_set, *ood_sets])}
    pre, student = cm.models["pretrained"], cm.models["student"]
    with cm.lock, torch.random.fork_rng(devices=[]):
        head_zs, head_ft, head_names = _ce_heads(cm, sets[id_set])
        state_zs = {k: v.detach().clone() for k, v in pre.clip.state_dict().items()}
        state_ft = {k: v.detach().clone() for k, v in student.clip.state_dict().items()}
        rows = wise_curve(student, cm.tokenizer, state_zs, state_ft, sets, alphas, id_set=id_set, head_zs=head_zs,
                          head_ft=head_ft, head_classnames=head_names)
    return pd.DataFrame(curve_summary(rows)), pd.DataFrame(rows)
