"""Compute on data that may not be downloaded: signed jobs, sandboxed executors, lineage."""
