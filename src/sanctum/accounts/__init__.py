"""User accounts: creation, password login with throttling, TOTP second factor, bearer tokens."""
