"""The enforced data management plan (DMP) of a project.

A project holds a machine-readable DMP in the RDA DMP Common Standard (JSON, v1.1 or v1.2) with a
namespaced extension for Sanctum's own controls. It is versioned and audited, and it is enforced,
not just stored: the services that upload, share, run jobs and export consult the plan in force
(``sanctum.dmp.enforce``), and the scheduled lifecycle run (``sanctum.dmp.lifecycle``) crypto-shreds
datasets whose retention date has come.

Modules: ``standard`` (validation against the standard), ``extension`` (Sanctum's controls),
``plan`` (what a validated document means for each dataset), ``models`` and ``service`` (versions
in the catalog), ``enforce`` (the checks other services call), ``lifecycle`` (retention), and
``report`` (the GDPR compliance report).
"""
