"""Permissions as one enum and the role → permission table as data.

Everything not listed here is denied. Tests are generated from ``ROLE_PERMISSIONS`` and
``PLATFORM_PERMISSIONS``, so adding a permission without deciding who holds it shows up at once.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    # Project-scoped: decided by the caller's role in that one project.
    PROJECT_READ = "project:read"
    MEMBERS_READ = "members:read"
    MEMBERS_MANAGE = "members:manage"
    AUDIT_READ = "audit:read"
    PROJECT_DELETE = "project:delete"
    DATASETS_READ = "datasets:read"  # names, versions, manifests (sizes, hashes) - not the data
    DATASETS_MANAGE = "datasets:manage"  # create datasets and versions, set project data settings
    DATA_IMPORT = "data:import"  # upload raw files or tables from outside the project
    DICOM_ROUTES_MANAGE = "dicom:routes"  # route a sending PACS (its calling AE title) into a dataset
    DATA_DOWNLOAD = "data:download"  # take raw files out of the platform
    DATA_QUERY = "data:query"  # SQL over the project's tables, results capped for scientists
    DATASETS_SHARE = "datasets:share"  # offer, accept, decline and revoke shares
    DATASETS_SHRED = "datasets:shred"  # destroy a dataset's key (erasure)
    EXPERIMENTS_READ = "experiments:read"  # experiments, runs, params, metrics, tags
    EXPERIMENTS_WRITE = "experiments:write"  # create and log to experiments and runs
    JOBS_READ = "jobs:read"  # jobs, their manifests, logs and the lineage of outputs
    JOBS_SUBMIT = "jobs:submit"  # run signed code on the project's data; cancel one's own jobs
    JOBS_MANAGE = "jobs:manage"  # cancel anyone's job in the project
    AIRLOCK_READ = "airlock:read"  # export and import requests: one's own, or all for reviewers and auditors
    EXPORTS_REQUEST = "exports:request"  # ask for job outputs to leave; download them once released
    EXPORTS_REVIEW = "exports:review"  # vote on (or return) others' export requests
    EXPORTS_RELEASE = "exports:release"  # release approved exports; override a failed automatic check
    IMPORTS_REQUEST = "imports:request"  # ask for a file from outside to enter the project
    IMPORTS_APPROVE = "imports:approve"  # approve or reject import requests
    DMP_MANAGE = "dmp:manage"  # set a new version of the project's data management plan
    # Platform-scoped: decided by the account itself, never by a project role.
    SELF_READ = "self:read"
    SELF_MANAGE = "self:manage"  # own 2FA
    TOKENS_MANAGE = "tokens:manage"
    PROJECTS_LIST = "projects:list"
    PROJECT_CREATE = "projects:create"
    USERS_MANAGE = "admin:users"
    AUDIT_READ_ALL = "admin:audit"
    NODES_MANAGE = "admin:nodes"  # register and retire the compute nodes that may receive data keys


class Role(StrEnum):
    DATA_OWNER = "data_owner"
    DATA_SCIENTIST = "data_scientist"
    OUTPUT_CHECKER = "output_checker"
    AUDITOR = "auditor"


PROJECT_PERMISSIONS: frozenset[Permission] = frozenset(
    {
        Permission.PROJECT_READ,
        Permission.MEMBERS_READ,
        Permission.MEMBERS_MANAGE,
        Permission.AUDIT_READ,
        Permission.PROJECT_DELETE,
        Permission.DATASETS_READ,
        Permission.DATASETS_MANAGE,
        Permission.DATA_IMPORT,
        Permission.DICOM_ROUTES_MANAGE,
        Permission.DATA_DOWNLOAD,
        Permission.DATA_QUERY,
        Permission.DATASETS_SHARE,
        Permission.DATASETS_SHRED,
        Permission.EXPERIMENTS_READ,
        Permission.EXPERIMENTS_WRITE,
        Permission.JOBS_READ,
        Permission.JOBS_SUBMIT,
        Permission.JOBS_MANAGE,
        Permission.AIRLOCK_READ,
        Permission.EXPORTS_REQUEST,
        Permission.EXPORTS_REVIEW,
        Permission.EXPORTS_RELEASE,
        Permission.IMPORTS_REQUEST,
        Permission.IMPORTS_APPROVE,
        Permission.DMP_MANAGE,
    }
)

# Run metadata (metrics, params, tags) is what output checkers and auditors review against, so
# every role reads it; only the roles that run analyses write it.
# Jobs and lineage are likewise what outputs are checked against. Every role reaches the airlock's
# requests, filtered in SQL: a data scientist sees their own, reviewers and auditors all of them.
_SEE = frozenset(
    {
        Permission.PROJECT_READ,
        Permission.MEMBERS_READ,
        Permission.DATASETS_READ,
        Permission.EXPERIMENTS_READ,
        Permission.JOBS_READ,
        Permission.AIRLOCK_READ,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.DATA_OWNER: PROJECT_PERMISSIONS,
    Role.DATA_SCIENTIST: _SEE
    | {
        Permission.DATA_QUERY,
        Permission.EXPERIMENTS_WRITE,
        Permission.JOBS_SUBMIT,
        Permission.EXPORTS_REQUEST,
        Permission.IMPORTS_REQUEST,
    },
    Role.OUTPUT_CHECKER: _SEE | {Permission.EXPORTS_REVIEW},
    Role.AUDITOR: _SEE | {Permission.AUDIT_READ},
}

# Why a role is refused, where the answer is "use the airlock" rather than plain "no".
DENIAL_HINTS: dict[Permission, str] = {
    Permission.DATA_IMPORT: "data enters a project only through its owners or an import request "
    "in the airlock",
    Permission.DATA_DOWNLOAD: "raw data leaves the platform only through an export request in the airlock; "
    "query it or run a job instead",
}


class Account(StrEnum):
    """What an account is on the platform, independent of any project."""

    USER = "user"
    CREATOR = "creator"  # a user an admin allows to create projects (the default)
    ADMIN = "admin"


PLATFORM_PERMISSIONS: dict[Account, frozenset[Permission]] = {
    Account.USER: frozenset(
        {Permission.SELF_READ, Permission.SELF_MANAGE, Permission.TOKENS_MANAGE, Permission.PROJECTS_LIST}
    ),
    Account.CREATOR: frozenset(
        {
            Permission.SELF_READ,
            Permission.SELF_MANAGE,
            Permission.TOKENS_MANAGE,
            Permission.PROJECTS_LIST,
            Permission.PROJECT_CREATE,
        }
    ),
    Account.ADMIN: frozenset(
        {
            Permission.SELF_READ,
            Permission.SELF_MANAGE,
            Permission.TOKENS_MANAGE,
            Permission.PROJECTS_LIST,
            Permission.USERS_MANAGE,
            Permission.AUDIT_READ_ALL,
            Permission.NODES_MANAGE,
        }
    ),
}

# Token scopes are permission names, plus two shorthands. A token without scopes carries all of
# its user's permissions; with scopes it carries the intersection, never more.
SCOPE_ALIASES: dict[str, frozenset[Permission]] = {
    "read": frozenset(
        {
            Permission.PROJECT_READ,
            Permission.MEMBERS_READ,
            Permission.AUDIT_READ,
            Permission.DATASETS_READ,
            Permission.DATA_QUERY,
            Permission.EXPERIMENTS_READ,
            Permission.JOBS_READ,
            Permission.AIRLOCK_READ,
            Permission.SELF_READ,
            Permission.PROJECTS_LIST,
        }
    ),
    "all": frozenset(Permission),
}

# What a login that still has to enrol its second factor may reach (the /api/v1/me* routes).
ENROL_ONLY: frozenset[Permission] = frozenset({Permission.SELF_READ, Permission.SELF_MANAGE})


def expand_scopes(scopes: list[str] | None) -> frozenset[Permission]:
    """Turn stored scope names into permissions; an unknown name grants nothing."""
    if scopes is None:
        return frozenset(Permission)
    granted: set[Permission] = set()
    for scope in scopes:
        if scope in SCOPE_ALIASES:
            granted |= SCOPE_ALIASES[scope]
        elif scope in Permission._value2member_map_:
            granted.add(Permission(scope))
    return frozenset(granted)


def valid_scope(scope: str) -> bool:
    return scope in SCOPE_ALIASES or scope in Permission._value2member_map_
