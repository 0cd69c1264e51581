"""Datasets: versions, tables, sharing."""
