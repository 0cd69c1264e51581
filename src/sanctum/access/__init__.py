"""The one policy decision point: every permission decision in Sanctum is made here."""

from sanctum.access.permissions import ROLE_PERMISSIONS, Permission, Role
from sanctum.access.policy import Principal, authorize_platform, authorize_project
from sanctum.errors import Denied, NotFound

__all__ = [
    "ROLE_PERMISSIONS",
    "Denied",
    "NotFound",
    "Permission",
    "Principal",
    "Role",
    "authorize_platform",
    "authorize_project",
]
