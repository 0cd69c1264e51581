"""Tamper-evident audit trail: hash-chained, append-only, written in the caller's transaction."""

from sanctum.audit.chain import GENESIS, AuditContext, VerifyReport, record, verify

__all__ = ["GENESIS", "AuditContext", "VerifyReport", "record", "verify"]
