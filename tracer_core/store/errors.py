"""The store's error type, in a module of its own: ``tracer_core.api`` re-exports it for the pages'
``except`` clauses without importing the store (runstore.py pulls in the indexer, queries and exports: ~40 %
of ``import tracer_core.api``, issue 17)."""


class StoreError(RuntimeError):
    """A request the store refuses (unknown or ambiguous run, deleting a live run, ...)."""
