"""Shapes every area uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """What clients send: closed, so an unexpected field is a client bug worth a clear 422."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


class PublicModel(BaseModel):
    """What the server sends: open, so an older SDK keeps working when a newer server adds fields."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
