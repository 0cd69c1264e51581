"""The airlock: the only way job outputs leave a project (export requests, checked automatically and
reviewed by people who did not ask for them) and the only way a data scientist brings a file in
(import requests, approved by a data owner).

Modules: ``models`` (tables), ``states`` (the export state machine as data), ``rules`` (the
project's export and import rules, one function the data management plan can override),
``sniff``/``checks``/``table_checks``/``acro`` (the automatic disclosure checks, pure functions),
``content`` (reading a file's plaintext and re-hashing it), ``exports``/``export_files``/``reviews``
(the export service) and ``imports`` (the import service).
"""
