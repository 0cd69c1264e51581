"""Ingest: raw files in, de-identified encrypted dataset versions out.

The client (``sanctum ingest``, ``Client.ingest``) walks a folder or archive and streams the raw
files to a server ingest session in batches; the server detects each file's type by content,
de-identifies it in a process pool (or on Dask), encrypts and stores it in a draft version and
records what became of every source file. ``finish`` commits the version, writes the DICOM
metadata table and keeps the de-identification report. See docs/ingest.md.
"""
