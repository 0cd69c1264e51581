"""What the SDK raises. Catch ``SanctumSDKError`` for all of them."""

from __future__ import annotations


class SanctumSDKError(Exception):
    """Base of every error the SDK raises; ``code`` is stable, ``message`` is one line for people."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class SanctumAPIError(SanctumSDKError):
    """The server refused the request (or answered with something that is not Sanctum's JSON).

    ``status`` is the HTTP status, ``code`` the server's stable error code (``not_found``,
    ``token_revoked``, ...). A request the shared schemas reject before sending is reported as the
    server would report it: 422 ``invalid_input``.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, {self.code})"

    def __repr__(self) -> str:
        return f"SanctumAPIError({self.status!r}, {self.code!r}, {self.message!r})"


class SanctumConnectionError(SanctumSDKError):
    """The server could not be reached, or did not answer in time."""

    code = "connection_error"


class SanctumConfigError(SanctumSDKError):
    """No usable server URL or credentials (not logged in, login expired, unsafe file, bad URL)."""

    code = "not_configured"
