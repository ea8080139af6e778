"""Training: the readable loop, evaluation, checkpoints. Reports through hooks only."""
from .hooks import EvalReport, HookList, Hooks, RunInfo, RunSummary


def run(config, hooks=None, *, output_dir=None):
    """Fine-tune per ``config`` (see loop.run). Imported lazily so ``hooks`` stays torch-free."""
    from .loop import run as _run
    return _run(config, hooks, output_dir=output_dir)


__all__ = ["EvalReport", "HookList", "Hooks", "RunInfo", "RunSummary", "run"]
