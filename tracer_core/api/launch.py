"""Launch page: presets, the form's fields, validated configs, sweeps, the one-click demo."""
from __future__ import annotations

from tracer_core.lazy import lazy

import itertools
import json
import os
from typing import Any, Sequence

pd = lazy("pandas")

from tracer_core.config import ConfigError, RunConfig, list_presets, load_preset, preset_description

from .common import Services

DEMO_PRESETS = ("tracer_ema", "tracer", "ft")        # teacher runs first: their KL gap is the point of the demo
# Short runs (EMA collapse shows within tens of steps) with live ID/OOD accuracy every 25 steps on 250 images per
# set. No step-0 evaluation: it would delay the first live point by seconds (target: < 10 s from the click).
DEMO_OVERRIDES = ("train.steps=100", "train.eval_every=25", "train.eval_at_start=false", "data.max_eval_samples=250")
# What the tuned protocol chose (bench/tuning_full/tuning_results.md: 11 methods x 4 trials at the demo's 100
# steps, selection on mnist:val only): lambda_SD 0.3 and alpha_FD 250 for both teachers (250 = 2000 x 64 / 512,
# the paper's per-unit FD weight at width 64), FT at lr 1e-4. The FT run also evaluates at step 0: that point is
# the zero-shot model (its head starts as the zero-shot head), one end of the zero-shot-FT line the demo's
# effective robustness is measured against until the WiSE-FT curve of the FT run is computed.
DEMO_TUNED = {"tracer_ema": ("loss.lambda_sd=0.3", "loss.alpha_fd=250"),
              "tracer": ("loss.lambda_sd=0.3", "loss.alpha_fd=250"),
              "ft": ("optim.lr=1e-4", "train.eval_at_start=true")}
DEMO_ENV = "TRACER_DEMO_OVERRIDES"                  # JSON list of extra overrides (tests: tiny synthetic runs)
MAX_SWEEP = 64
FORM_KEYS = {"method": "method", "teacher": "teacher.kind", "beta": "teacher.beta",
             "m_start": "teacher.momentum_start", "m_end": "teacher.momentum_end",
             "m_warmup": "teacher.momentum_warmup", "update_every": "teacher.update_every",
             "lambda_sd": "loss.lambda_sd", "alpha_crd": "loss.alpha_crd", "alpha_fd": "loss.alpha_fd",
             "alpha_icl": "loss.alpha_icl", "alpha_cross_kd": "loss.alpha_cross_kd", "lr": "optim.lr",
             "steps": "train.steps", "batch_size": "data.batch_size", "seed": "train.seed",
             "model": "model.name", "pretrained": "model.pretrained", "train_set": "data.train_set",
             "eval_sets": "data.eval_sets", "name": "name"}



def presets() -> pd.DataFrame:
    return pd.DataFrame([{"preset": p, "description": preset_description(p)} for p in list_presets()])


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def form_values(preset: str) -> dict[str, Any]:
    """The launch form's fields (keys of FORM_KEYS) filled from a preset."""
    cfg = load_preset(preset).to_dict()
    return {k: _get(cfg, dotted) for k, dotted in FORM_KEYS.items()}


def parse_list(text: str, kind: type = float, what: str = "values") -> list:
    """'1, 2 3' -> [1, 2, 3]; raises ConfigError naming the bad item."""
    out = []
    for item in str(text or "").replace(";", ",").replace(" ", ",").split(","):
        if item.strip():
            try:
                out.append(kind(item.strip()))
            except ValueError:
                raise ConfigError(f"{what}: {item.strip()!r} is not a valid {kind.__name__}") from None
    return out


def _fmt(v: Any) -> str:
    return json.dumps(list(v)) if isinstance(v, (list, tuple)) else (v if isinstance(v, str) else json.dumps(v))


def build_config(preset: str, values: dict[str, Any], extra: str = "", tags: str = "") -> RunConfig:
    """Preset + form values + free-form ``key=value`` lines; raises ConfigError with a readable message."""
    overrides = [f"{FORM_KEYS[k]}={_fmt(v)}" for k, v in values.items() if k in FORM_KEYS and v is not None]
    overrides += [ln.strip() for ln in str(extra or "").splitlines() if ln.strip() and not ln.strip().startswith("#")]
    cfg = load_preset(preset, overrides)
    if tags.strip():
        cfg = cfg.replace(tags=[t.strip() for t in tags.split(",") if t.strip()])
    _check_datasets(cfg)
    return cfg


def list_datasets() -> list[str]:
    """Registered dataset names, then those declared in the datasets file in force (data/declared.py)."""
    from tracer_core.data import list_datasets as _names
    from tracer_core.data.registry import declared_names
    return _names() + declared_names()


def _check_datasets(cfg: RunConfig) -> None:
    """Names (registered or declared), paths and class lists, before the run is queued (data/runsets.py)."""
    if not cfg.data.eval_sets:
        raise ConfigError("data.eval_sets: choose at least one evaluation set")
    try:
        from tracer_core.data.runsets import check_run_data
    except ImportError:          # registry unavailable: the worker reports the problem instead
        return
    try:
        check_run_data(cfg.data)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def sweep_configs(base: RunConfig, seeds: Sequence[int] = (), betas: Sequence[float] = (),
                  lambdas: Sequence[float] = ()) -> list[RunConfig]:
    """One config per combination of the given seeds x beta values x lambda_SD values (empty = base's)."""
    seeds, betas, lambdas = list(seeds) or [None], list(betas) or [None], list(lambdas) or [None]
    n = len(seeds) * len(betas) * len(lambdas)
    if n > MAX_SWEEP:
        raise ConfigError(f"the sweep has {n} runs; at most {MAX_SWEEP} per launch")
    out = []
    for seed, beta, lam in itertools.product(seeds, betas, lambdas):
        changes, suffix = {}, []
        if seed is not None:
            changes["train.seed"], suffix = int(seed), suffix + [f"s{seed}"]
        if beta is not None:
            changes["teacher.beta"], suffix = float(beta), suffix + [f"b{beta:g}"]
        if lam is not None:
            changes["loss.lambda_sd"], suffix = float(lam), suffix + [f"sd{lam:g}"]
        if n > 1:
            changes["name"] = "-".join([base.name or base.preset or "run"] + suffix)
        out.append(base.replace(**changes) if changes else base)
    return out


def submit_runs(services: Services, configs: Sequence[RunConfig], client_token: str) -> list[str]:
    """Queue each config; resubmitting the same config with the same token within 10 s returns its run id."""
    return [services.runner.submit(c, client_token=client_token) for c in configs]


def demo_configs() -> list[RunConfig]:
    """The one-click comparison: EMA teacher, WMA teacher (TRACER) and plain FT on the embedded default, with
    the settings the reduced tuned protocol chose (``DEMO_TUNED``).

    ``$TRACER_DEMO_OVERRIDES`` (a JSON list of ``key=value``) is applied last, e.g. for tests:
    ``'["train.steps=40","model.pretrained=none","data.train_set=synthetic","data.eval_sets=[\\"synthetic\\"]"]'``.
    """
    extra = os.environ.get(DEMO_ENV, "").strip()
    try:
        extra_list = json.loads(extra) if extra else []
    except json.JSONDecodeError as e:
        raise ConfigError(f"${DEMO_ENV} must be a JSON list of key=value strings ({e})") from None
    return [load_preset(p, [*DEMO_OVERRIDES, *DEMO_TUNED.get(p, ()), 'tags=["demo"]', *extra_list])
            for p in DEMO_PRESETS]


def start_demo(services: Services, client_token: str) -> list[str]:
    return submit_runs(services, demo_configs(), client_token)
