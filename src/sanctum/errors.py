"""Domain errors. Each carries the HTTP status and a stable code; the API renders them as
``{"error": {"code": ..., "message": ...}}`` and the CLI prints the message."""

from __future__ import annotations


class SanctumError(Exception):
    status = 400
    code = "bad_request"
    # True when the failing transaction holds the record of this failure (an audit event, a
    # failed-login count): the unit of work commits it instead of rolling it back.
    persist = False

    def __init__(self, message: str, *, code: str | None = None, persist: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if persist is not None:
            self.persist = persist


class InvalidInput(SanctumError):
    status = 422
    code = "invalid_input"


class Unauthenticated(SanctumError):
    status = 401
    code = "unauthenticated"


class Denied(SanctumError):
    status = 403
    code = "forbidden"


class NotFound(SanctumError):
    """Also what another project's object looks like: its existence is not revealed."""

    status = 404
    code = "not_found"


class Conflict(SanctumError):
    status = 409
    code = "conflict"


class TooManyRequests(SanctumError):
    status = 429
    code = "too_many_requests"

    def __init__(
        self, message: str, *, retry_after: int, code: str | None = None, persist: bool | None = None
    ) -> None:
        super().__init__(message, code=code, persist=persist)
        self.retry_after = retry_after
