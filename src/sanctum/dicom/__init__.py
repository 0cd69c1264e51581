"""The DICOM receiver: a Storage SCP that de-identifies what a PACS sends, on arrival.

Each calling AE title is routed by a data owner to one dataset of one project (``routes``); an
association from any other AE title is rejected before a byte of data is accepted. Every instance
received goes through the ingest pipeline (``sanctum.ingest.batches.ingest_files``) at once, and
one association is one ingest session: released, it is committed as a new dataset version;
aborted (or cut off by a crash), nothing of it is committed. See docs/dicom-receiver.md.
"""
