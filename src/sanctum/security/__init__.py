"""Small pure security helpers: passwords, TOTP, token secrets, keys. No database, no web."""
