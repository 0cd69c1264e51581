"""Wire schemas, one per direction (``XCreate`` in, ``XPublic`` out), shared by API, SDK and CLI.

Database rows never go out on the wire; these do. They import nothing but Pydantic, so the SDK
can use them on a researcher's laptop.
"""
