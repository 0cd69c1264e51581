"""De-identification on ingest: pure functions, bytes in and bytes + report out, no I/O.

``sanctum.deid.dicom`` applies PS3.15 Annex E (Basic Profile and options) to DICOM files; see
docs/deidentification.md.
"""
