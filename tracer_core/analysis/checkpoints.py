"""A run checkpoint -> the pretrained θ₀, student and teacher models of that run (the analysis pages' input)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import ModelConfig
from ..models import build_model
from ..training.checkpoint import load_checkpoint


def _model_config(config: dict):
    """The ModelConfig of a stored run config, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in dict(config.get("model", {})).items() if k in names})


def load_checkpoint_bundle(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """{"pretrained", "student", "teacher" (None without one), "tokenizer", "config" (dict), "step"}.

    The three models are ClipModels in eval mode with frozen weights. "pretrained" is rebuilt from the run's
    model section (``model.pretrained``: embedded / tag / file; a random init is re-seeded with the run's
    ``train.seed``, exactly as the run started, without disturbing the caller's RNG).
    """
    state = load_checkpoint(path)
    config = state["config"]
    mcfg = _model_config(config)
    bare = dataclasses.replace(mcfg, pretrained="none")     # architecture only; weights come from the file
    with torch.random.fork_rng(devices=[]):                   # random inits must not move the caller's RNG
        torch.manual_seed(int(config.get("train", {}).get("seed", 0)))
        pretrained, tokenizer = build_model(mcfg, device)
        student, _ = build_model(bare, device)
        teacher = build_model(bare, device)[0] if state.get("teacher") is not None else None
    student.clip.load_state_dict(state["student"])
    if teacher is not None:
        teacher.load_state_dict(state["teacher"]["module"])
    for m in (pretrained, student, teacher):
        if m is not None:
            m.eval().requires_grad_(False)
    return {"pretrained": pretrained, "student": student, "teacher": teacher, "tokenizer": tokenizer,
            "config": config, "step": int(state.get("step", 0))}


def load_models_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """{"pretrained", "student", "teacher"}: ClipModels of a run checkpoint (teacher None without one)."""
    bundle = load_checkpoint_bundle(path, device)
    return {k: bundle[k] for k in ("pretrained", "student", "teacher")}
