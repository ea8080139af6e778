"""TRACER Studio core library: models, teachers, losses, metrics, training, store, jobs."""
__version__ = "0.1.0"
