"""Run store: versioned schema, append-only run folders (RunWriter) and the DuckDB index (RunStore).

Importing this package imports nothing heavy; see README.md in this folder for the design.
"""
