"""Build a CLIP student through open_clip and give it one small interface.

``build_model(ModelConfig)`` returns ``(ClipModel, tokenizer)``. ``ClipModel`` wraps an open_clip model:
it takes images in [0, 1] (it normalises them itself, so datasets need not know the model's mean/std)
and returns L2-normalised features plus the exp'd logit scale, which is what every loss needs.

Weights come from (ModelConfig.pretrained):
  "embedded"        the tiny CLIP shipped in ``data/pretrained/<name>.safetensors``
  "" / "none"       random init (seeded by the caller)
  an existing path  a local checkpoint (.safetensors, or a torch file holding a state dict)
  anything else     an open_clip pretrained tag: read from the local cache (model.cache_dir or open_clip's
                    default) without a network request; downloaded only when not cached
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .checkpoint_io import CheckpointError, load_state_dict_file

CONFIG_DIR = Path(__file__).parent / "configs"
EMBEDDED_DIR = Path(__file__).resolve().parents[2] / "data" / "pretrained"
BUILTIN = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))

for _cfg in CONFIG_DIR.glob("*.json"):   # register the built-in tiny configs with open_clip once
    open_clip.add_model_config(_cfg)


class ClipModel(nn.Module):
    """open_clip model + input normalisation. forward(images (B,3,H,W) in [0,1], tokens (B,L)) -> (F, G, s)."""

    def __init__(self, clip: nn.Module, name: str, mean, std):
        super().__init__()
        self.clip = clip
        self.name = name
        # persistent=False: mean/std are preprocessing constants, not weights; keeps state dicts open_clip-shaped
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (B,3,H,W) in [0,1] -> (B,d) unit vectors."""
        x = (images - self.mean) / self.std
        return F.normalize(self.clip.encode_image(x), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,L) int64 -> (B,d) unit vectors."""
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale

    # -- projections used by the weight-space regularisers (spec §1.3) ----------------------------
    def visual_projection(self) -> torch.Tensor | None:
        """W_v (width_v, d) for ViT towers, None where the tower has no such matrix."""
        proj = getattr(self.clip.visual, "proj", None)
        return proj if isinstance(proj, torch.Tensor) else None

    def text_projection(self) -> torch.Tensor | None:
        proj = getattr(self.clip, "text_projection", None)
        if isinstance(proj, nn.Linear):
            return proj.weight.t()
        return proj if isinstance(proj, torch.Tensor) else None


def _mean_std(clip: nn.Module):
    mean = getattr(clip.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(clip.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return tuple(mean), tuple(std)


class _OpenClipBelowError(logging.Filter):
    """Drops open_clip's own records below ERROR ("initialized randomly", "Loaded ... config"). open_clip logs
    through the root logger, so the filter sits there; every other logger's warnings (the run store's write
    failures among them) still show, which raising the root level to ERROR used to hide."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(_OPEN_CLIP_DIR)


_OPEN_CLIP_DIR = str(Path(open_clip.__file__).resolve().parent)


def _quiet_open_clip() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _OpenClipBelowError) for f in root.filters):
        root.addFilter(_OpenClipBelowError())


@contextlib.contextmanager
def _hub_offline():
    """Make huggingface_hub use only its local cache inside the block (no HEAD requests, no retries)."""
    try:
        import huggingface_hub.constants as hub
    except ImportError:          # open_clip then only knows URL downloads, which check the cache first anyway
        yield
        return
    before, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before


def _create(name: str, tag: str | None, cache_dir: str) -> nn.Module:
    """open_clip.create_model with errors a user can act on. A pretrained tag is looked up in the local
    cache first (instant where the weights were downloaded before, e.g. a GPU box without a network); only
    if it is not there does open_clip try to download (set HF_HUB_OFFLINE=1 to fail at once instead)."""
    _quiet_open_clip()
    if name not in open_clip.list_models():
        raise CheckpointError(f"unknown model {name!r}: use a built-in ({', '.join(BUILTIN)}) or an "
                              f"open_clip architecture (open_clip.list_models())")
    if tag and tag not in open_clip.list_pretrained_tags_by_model(name):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise CheckpointError(f"unknown pretrained tag {tag!r} for {name!r} (open_clip knows: {tags}); "
                              f"or pass a local checkpoint path")
    kwargs = {"pretrained": tag, "cache_dir": cache_dir or None}
    if tag:
        try:
            with _hub_offline():
                return open_clip.create_model(name, **kwargs)
        except Exception:   # not in the local cache: try the network below
            pass
    try:
        return open_clip.create_model(name, **kwargs)
    except Exception as e:  # hub/network errors surface as many types
        where = f"model.cache_dir={cache_dir!r}" if cache_dir else "open_clip's default cache"
        raise CheckpointError(f"could not load pretrained weights {tag!r} for {name!r} from {where} and could "
                              f"not download them ({type(e).__name__}: {str(e)[:300]}). Put the weights in "
                              f"the cache or pass a local checkpoint path.") from None


def embedded_checkpoint(name: str) -> Path:
    return EMBEDDED_DIR / f"{name}.safetensors"


def build_model(cfg: ModelConfig, device: str | torch.device = "cpu"):
    """Return (ClipModel, tokenizer) on ``device`` in fp32, in train mode."""
    pretrained = cfg.pretrained.strip()
    local = Path(pretrained).expanduser() if pretrained not in ("", "none", "embedded") else None
    if pretrained == "embedded":
        local = embedded_checkpoint(cfg.name)
        if not local.exists():
            raise CheckpointError(f"{local}: no embedded checkpoint for model {cfg.name!r}. Run "
                                  f"`python -m tracer_core pretrain` to create it, or set model.pretrained=none.")
    if local is not None and (local.exists() or local.suffix in (".pt", ".pth", ".bin", ".safetensors")):
        clip = _create(cfg.name, None, cfg.cache_dir)
        load_state_dict_file(clip, local)
    elif pretrained in ("", "none"):
        clip = _create(cfg.name, None, cfg.cache_dir)
    else:
        clip = _create(cfg.name, pretrained, cfg.cache_dir)
    mean, std = _mean_std(clip)
    model = ClipModel(clip.float(), cfg.name, mean, std).to(device)
    tokenizer = open_clip.get_tokenizer(cfg.name)
    return model.train(), tokenizer


def architecture_on_meta(name: str) -> nn.Module:
    """The open_clip architecture ``name`` on the meta device: shapes and parameter counts, no memory, no
    weights read (the memory estimate before a run, training/preflight.py)."""
    _quiet_open_clip()
    if name not in open_clip.list_models():
        raise CheckpointError(f"unknown model {name!r}: use a built-in ({', '.join(BUILTIN)}) or an "
                              f"open_clip architecture (open_clip.list_models())")
    with torch.device("meta"):
        return open_clip.create_model(name, pretrained=None, device="meta")


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
