"""Shapes every area uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Closed models: an unexpected field is a client bug worth a clear 422, not silence."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
