"""Experiment tracking: an MLflow-compatible REST API over the catalog, scoped by project.

``MlflowError`` lives here, beside nothing else, so the service, the search parser and the router
share it without importing each other.
"""

from __future__ import annotations

# MLflow's error codes and the HTTP status its server answers them with.
ERROR_STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "MALFORMED_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_STATE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 429,
}


class MlflowError(Exception):
    """An error answered as ``{"error_code": ..., "message": ...}``, the shape MLflow clients parse."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = ERROR_STATUS.get(error_code, 400)
