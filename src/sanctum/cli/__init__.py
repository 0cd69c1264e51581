"""The ``sanctum`` command: server-side commands run on a data dir, client commands talk to a server."""
