"""``pd = lazy("pandas")``: a module imported on first attribute access, not at import time.

Why: ``import tracer_core.api`` is on the dashboard's start-up path; pandas, numpy, DuckDB and pyarrow cost
most of it (bench/RESULTS.md, "Profiles") although a page needs them only when it queries the store. A proxy
(not importlib's LazyLoader) because LazyLoader's find_spec imports a dotted name's parent package at once.
"""
from __future__ import annotations

import importlib
import types


class _LazyModule(types.ModuleType):
    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_lazy_target"] = None

    def _load(self) -> types.ModuleType:
        mod = self.__dict__["_lazy_target"]
        if mod is None:
            mod = self.__dict__["_lazy_target"] = importlib.import_module(self.__name__)
        return mod

    def __getattr__(self, attr: str):
        return getattr(self._load(), attr)

    def __dir__(self):
        return dir(self._load())


def lazy(name: str) -> types.ModuleType:
    """A stand-in for ``importlib.import_module(name)`` that imports it on first use."""
    return _LazyModule(name)
