"""Projects (the sandboxes) and their members."""
