"""The sections of a :class:`~tracer_core.config.RunConfig`: one frozen dataclass each, with its defaults (the
embedded default scenario) and its ``validate`` (called by RunConfig after the type checks). Numerics follow
``shared/reference/tracer_algorithm.md`` (sections cited per field)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..methods import method_names
from ..teachers import teacher_kinds
from .checks import check, check_range

TEACHER_KINDS, METHODS = teacher_kinds(), method_names()     # from the (torch-free) registries, never a hand list
# FT2B's simulated-OOD operations (methods/simulated_ood.py). The defaults avoid the evaluation shift
# families (noise, blur, jpeg, elastic, contrast, colour) on purpose: peer_methods.md A.3 leakage warning.
FT2B_OPS = ("affine", "posterize", "solarize", "invert", "colour", "noise", "blur")


@dataclass(frozen=True)
class ModelConfig:
    # open_clip architecture name (e.g. "ViT-B-16") or a built-in tiny config ("tiny-vit").
    name: str = "tiny-vit"
    # "embedded" = the checkpoint shipped in data/; "" or "none" = random init; an open_clip
    # pretrained tag (e.g. "openai", "laion400m_e32"); or a path to a local checkpoint file.
    pretrained: str = "embedded"
    # Where open_clip looks for (already downloaded) weights; empty = open_clip's default.
    cache_dir: str = ""

    def validate(self) -> None:
        check(bool(self.name), "model.name must not be empty")


@dataclass(frozen=True)
class DataConfig:
    # Registered dataset name ("mnist", "synthetic", ...) or "imagefolder"/"csv" with `path`.
    train_set: str = "mnist"
    path: str = ""
    eval_sets: tuple[str, ...] = ("mnist", "colored_mnist", "corrupted_mnist", "sklearn_digits", "heldout_fonts")
    batch_size: int = 64
    eval_batch_size: int = 256
    max_eval_samples: int = 1000   # per eval set; keeps periodic evaluation cheap on CPU
    seed: int = 0                  # data seed (splits, synthetic worlds); the train seed is train.seed
    # JSON file declaring named file datasets (tracer_core/data/declared.py); "" = $TRACER_DATASETS, else
    # <data dir>/datasets.json when it exists. Declared names work in train_set and eval_sets.
    datasets_file: str = ""
    # Prompt templates of every set's zero-shot head and template captions: "" = each set's own (ImageNet
    # family: openai80), "openai80" | "reference86" | "short", or a file with one template per line.
    templates: str = ""
    # DataLoader worker processes that decode file images (data/loader.py): -1 = auto (0 for the in-memory
    # digit sets, min(8, CPUs) for file-backed sets), 0 = decode in the training process
    num_workers: int = -1
    # file-backed train sets: the reference's RandomResizedCrop(scale 0.9-1, bicubic) + flip (spec §1.1);
    # false = the eval transform (resize + centre crop). In-memory sets are never augmented here.
    augment: bool = True

    def validate(self) -> None:
        check_range("data", self, "batch_size", ge=2, why=" for a contrastive batch")
        check_range("data", self, ("eval_batch_size", "max_eval_samples"), ge=1)
        check(len(self.eval_sets) > 0, "data.eval_sets must name at least one evaluation set, got []")
        check(all(isinstance(n, str) and n.strip() for n in self.eval_sets),
              f"data.eval_sets: every entry must be a non-empty dataset name, got {list(self.eval_sets)}")
        check_range("data", self, "num_workers", ge=-1, why=" (-1 = auto)")


@dataclass(frozen=True)
class LossConfig:
    # §4.1/§4.2: lambda_sd multiplies either the basic bidirectional SD (all alphas 0) or sum_k alpha_k L_k.
    lambda_sd: float = 0.0
    distill_temperature: float = 1.0
    alpha_crd: float = 0.0
    alpha_fd: float = 0.0
    alpha_icl: float = 0.0
    alpha_cross_kd: float = 0.0
    # §1.3: lambda_F ||W_v W_t^T||_F and lambda_OC ||W_v^T W_v - I||_F (plain, non-squared norms).
    lambda_f: float = 0.0
    lambda_oc: float = 0.0
    # L2-SP: lambda_l2sp * ||theta - theta_0||^2 (peer_methods.md).
    lambda_l2sp: float = 0.0
    label_smoothing: float = 0.0

    def validate(self) -> None:
        check_range("loss", self, [f.name for f in fields(self)], ge=0)
        check_range("loss", self, "distill_temperature", gt=0)
        check_range("loss", self, "label_smoothing", lt=1)

    @property
    def any_alpha(self) -> bool:
        return any(a > 0 for a in (self.alpha_crd, self.alpha_fd, self.alpha_icl, self.alpha_cross_kd))


@dataclass(frozen=True)
class MethodParamsConfig:
    """Method-specific knobs of the peer methods (methods/*.py; shared/reference/peer_methods.md).

    Only the method named by ``RunConfig.method`` reads its own prefix; the others are ignored.
    """
    # LP and LP-FT (Kumar et al. 2022). LP-FT runs a linear probe (head only, image tower frozen, its
    # features computed without gradient) for round(lp_fraction * train.steps) steps, then full FT on the
    # same cosine schedule. The probe stage multiplies the scheduled lr by lp_lr_scale: a head with the
    # logit scale baked in barely moves at the full-FT lr. Method "lp" is the probe stage for all steps.
    lp_fraction: float = 0.3
    lp_lr_scale: float = 100.0
    # WiSE-FT (Wortsman et al. 2022): theta = (1 - alpha) theta_zs + alpha theta_ft, heads included.
    wise_alpha: float = 0.5
    # FT2B / FSR (Yuan et al. 2025; RECONSTRUCTION, peer_methods.md A.2-A.4): CE + lambda_f T^2
    # KL(p_0^T(x~) || p^T(x~)) + lambda_c KL(sg p^T(x) || p^T(x~)), x~ = simulated-OOD view of x.
    ft2b_lambda_f: float = 1.0
    ft2b_lambda_c: float = 1.0
    ft2b_temperature: float = 1.0
    ft2b_ops: tuple[str, ...] = ("affine", "posterize", "solarize")
    ft2b_num_ops: int = 2            # RandAugment-style: ops drawn per image
    ft2b_magnitude: float = 0.5      # max magnitude in [0, 1]; each image draws U(0, magnitude) per op
    ft2b_cutout: float = 0.25        # Cutout side as a fraction of the image (p = 0.5); 0 = off
    # GRACE (Chopra et al. 2026; peer_methods.md B.3/B.4/B.7). LoRA on the vision tower's q/k/v/out.
    grace_lora_rank: int = 8         # paper 64 (ViT-B/32); B.7 tiny setting 8
    grace_lora_alpha: float = 8.0    # LoRA scale alpha / rank (not reported; 1.0 here)
    grace_pgd_eps: float = 4 / 255   # L_inf radius in [0, 1] pixel space (Table 10)
    grace_pgd_step: float = 1 / 255
    grace_pgd_steps: int = 3         # paper 10; B.7 suggests 3-5 on CPU
    grace_awp_rank: int = 2          # r_AWP,max: paper 4 with r = 64; B.7 tiny 2
    grace_awp_rho: float = 5e-3      # ||Delta||_F <= rho ||W_0||_F per layer (not reported; B.7)
    grace_awp_steps: int = 1         # T_AWP ascent steps (not reported; reimpl 1)
    grace_curvature_every: int = 0   # K; 0 = max(50, train.steps // 20) (B.7); paper 1000
    grace_curvature_beta: float = 0.9
    grace_rank_percentile: float = 80.0   # above -> rank max, below 100 - p -> rank 0, else max // 2
    grace_lambda_lar: float = 1.0    # not reported (reimpl 1.0)
    grace_lambda_gv: float = 1.0     # not reported (reimpl 1.0)
    grace_gram_eps: float = 1e-6

    def validate(self) -> None:
        p = "method_params"
        check_range(p, self, ("lp_fraction", "wise_alpha", "ft2b_magnitude"), ge=0, le=1)
        check_range(p, self, "ft2b_cutout", ge=0, lt=1)
        check_range(p, self, ("lp_lr_scale", "ft2b_temperature", "grace_lora_alpha"), gt=0)
        check_range(p, self, ("ft2b_lambda_f", "ft2b_lambda_c", "grace_pgd_eps", "grace_pgd_step", "grace_awp_rho",
                              "grace_lambda_lar", "grace_lambda_gv", "grace_gram_eps", "grace_pgd_steps",
                              "grace_awp_rank", "grace_awp_steps", "grace_curvature_every"), ge=0)
        bad = [op for op in self.ft2b_ops if op not in FT2B_OPS]
        check(not bad and len(self.ft2b_ops) > 0,
              f"{p}.ft2b_ops must be a non-empty list of {FT2B_OPS}, got {list(self.ft2b_ops)}")
        check_range(p, self, ("ft2b_num_ops", "grace_lora_rank"), ge=1)
        check_range(p, self, "grace_curvature_beta", ge=0, lt=1)
        check_range(p, self, "grace_rank_percentile", ge=50, le=100)


@dataclass(frozen=True)
class TeacherConfig:
    kind: str = "none"          # none | frozen | ema | wma
    beta: float = 0.5           # WMA Beta(beta, beta) kernel (§2)
    # Update gating (§2, §3.1, pitfall P4): f > 0 updates when step % f == 0 (WMA also at the last step);
    # f <= 0 means the spec's default: WMA every step, EMA every 500 steps.
    update_every: int = 1
    momentum_start: float = 0.05   # EMA m_src (weight on the *old* teacher)
    momentum_end: float = 0.9      # EMA m_tar
    momentum_warmup: float = 0.2   # fraction of total steps for the linear warm-up of m
    average_buffers: bool = False  # the reference averages parameters only (P3)

    def validate(self) -> None:
        check(self.kind in TEACHER_KINDS, f"teacher.kind must be one of {TEACHER_KINDS}, got {self.kind!r}")
        check_range("teacher", self, "beta", gt=0)
        check_range("teacher", self, ("momentum_start", "momentum_end", "momentum_warmup"), ge=0, le=1)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 30     # §6: lr(s) = base (s+1)/W for s < W
    min_lr: float = 0.0        # §6: *added* to the cosine, not interpolated
    max_grad_norm: float = 0.0     # §6 g_0; 0 = no clipping (all TRACER/EMA scripts)
    grad_norm_multiplier: float = 100.0  # g_1 = g_0 * multiplier (cosine rise; §6 default 100: 1e-4 -> 1e-2)

    def validate(self) -> None:
        check_range("optim", self, "lr", gt=0)
        check_range("optim", self, "weight_decay", ge=0)
        check_range("optim", self, ("beta1", "beta2"), ge=0, lt=1)
        check_range("optim", self, "eps", gt=0)
        check_range("optim", self, ("warmup_steps", "min_lr", "max_grad_norm"), ge=0)
        check_range("optim", self, "grad_norm_multiplier", gt=0, why=" (the clip norm rises from max_grad_norm "
                    "to max_grad_norm * grad_norm_multiplier)")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300            # optimisation steps T; 0 = from `epochs` and the train set (spec §1.1)
    # with steps = 0: T = epochs * ceil(distinct train images / data.batch_size), the reference's epoch being
    # the ImageFolder loader (ImageNet, B 512, 10 epochs: 25,030); ignored when steps > 0
    epochs: int = 0
    seed: int = 0
    device: str = "auto"        # auto | cpu | cuda | cuda:N
    precision: str = "auto"     # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 (+ GradScaler)
    tf32: bool = True           # CUDA only: TF32 matmuls/convolutions (the reference: matmul precision 'medium')
    channels_last: bool = False  # NHWC images and weights (helps conv stems / RN50 on tensor cores)
    compile: bool = False       # torch.compile the student's (and teacher's) towers; first steps pay the compile
    freeze_text: bool = False   # §6 --freeze_text_encoder
    trainable_layers: int = -1  # §6: -1 = all; N = last N residual blocks of each tower
    eval_every: int = 0         # evaluate every N steps (0 = only at the end)
    eval_at_start: bool = True  # zero-shot evaluation at step 0 (the pretrained model)
    checkpoint_every: int = 0   # 0 = only at the end (when an output dir is given)
    save_final: bool = True     # final checkpoint (student + teacher, no optimizer state: ~60 MB tiny)
    threads: int = 0            # torch intra-op threads; 0 = leave torch's default
    # §9.2 layer-wise CKA/SVCCA vs the pretrained model (and teacher) at every evaluation, on a fixed probe of
    # this many ID eval images + their class prompts; 0 = off, else >= 4 (debiased CKA needs n > 3)
    similarity_probe: int = 128

    def validate(self) -> None:
        check_range("train", self, ("steps", "epochs"), ge=0)
        check(self.steps > 0 or self.epochs > 0,
              "train.steps = 0 needs train.epochs >= 1 (steps from the train set size), or set train.steps >= 1")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
              f"train.device must be auto, cpu or cuda[:N], got {self.device!r}")
        check(self.precision in ("auto", "fp32", "bf16", "fp16"),
              f"train.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        check_range("train", self, "trainable_layers", ge=-1)
        check_range("train", self, ("eval_every", "checkpoint_every", "threads"), ge=0)
        check(self.similarity_probe == 0 or self.similarity_probe >= 4,
              f"train.similarity_probe must be 0 (off) or >= 4, got {self.similarity_probe}")
