"""One way to make a dataset error, importable by every data module without a cycle or torch."""
from __future__ import annotations


def data_error(message: str) -> Exception:
    """A :class:`tracer_core.data.base.DataError` (torch comes with base.py: only paid when something is wrong)."""
    from .base import DataError
    return DataError(message)
