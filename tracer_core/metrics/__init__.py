"""Pure metric functions (formula in each docstring) and thin accumulators.

``summaries`` is numpy-only; the torch-based functions load on first use so that torch-free callers
(the store, the API) can import ``tracer_core.metrics.summaries`` cheaply.
"""
import importlib

_LAZY = {
    "teacher_student_stats": ".teacher_stats",
    "entropy_rows": ".teacher_stats",
    "kl_rows_batchmean": ".teacher_stats",
    "summarize": ".summaries",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)


__all__ = sorted(_LAZY)
