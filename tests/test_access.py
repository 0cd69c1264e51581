"""The policy point, tested from its own table: every (role, permission) pair, every route."""

from __future__ import annotations

import pytest
from tests.routes import guards

from sanctum.access.permissions import (
    ENROL_ONLY,
    PLATFORM_PERMISSIONS,
    PROJECT_PERMISSIONS,
    ROLE_PERMISSIONS,
    Account,
    Permission,
    Role,
    expand_scopes,
)
from sanctum.access.policy import Principal, authorize_project, platform_allows
from sanctum.errors import Denied, NotFound

ALL = frozenset(Permission)


def principal(**kwargs: object) -> Principal:
    base: dict[str, object] = dict(
        user_id=1,
        email="p@example.org",
        is_admin=False,
        can_create_projects=True,
        token_id=1,
        token_kind="api",
    )
    base.update(kwargs)
    return Principal(**base)  # type: ignore[arg-type]


PAIRS = [(role, perm) for role in Role for perm in sorted(PROJECT_PERMISSIONS)]


@pytest.mark.parametrize(("role", "permission"), PAIRS, ids=[f"{r.value}-{p.value}" for r, p in PAIRS])
def test_role_permission_pair(role: Role, permission: Permission) -> None:
    """Generated from ROLE_PERMISSIONS: allowed pairs pass, every other pair is refused."""
    if permission in ROLE_PERMISSIONS[role]:
        authorize_project(principal(), role, permission)
    else:
        with pytest.raises(Denied):
            authorize_project(principal(), role, permission)


@pytest.mark.parametrize("permission", sorted(PROJECT_PERMISSIONS))
def test_non_member_gets_not_found(permission: Permission) -> None:
    with pytest.raises(NotFound):
        authorize_project(principal(is_admin=True), None, permission)


ACCOUNTS = {
    Account.USER: dict(can_create_projects=False),
    Account.CREATOR: dict(can_create_projects=True),
    Account.ADMIN: dict(is_admin=True, can_create_projects=False),
}
PLATFORM_PAIRS = [(a, p) for a in Account for p in sorted(set(Permission) - PROJECT_PERMISSIONS)]


@pytest.mark.parametrize(
    ("account", "permission"), PLATFORM_PAIRS, ids=[f"{a.value}-{p.value}" for a, p in PLATFORM_PAIRS]
)
def test_platform_permission_pair(account: Account, permission: Permission) -> None:
    p = principal(**ACCOUNTS[account])
    assert p.account is account
    assert platform_allows(p, permission) == (permission in PLATFORM_PERMISSIONS[account])


def test_project_permissions_are_never_platform_permissions() -> None:
    for perms in PLATFORM_PERMISSIONS.values():
        assert not (perms & PROJECT_PERMISSIONS)


def test_admins_hold_no_project_permission_through_their_account() -> None:
    assert not (PLATFORM_PERMISSIONS[Account.ADMIN] & PROJECT_PERMISSIONS)


@pytest.mark.parametrize("permission", sorted(Permission))
def test_enrol_only_reaches_only_self(permission: Permission) -> None:
    p = principal(enrol_only=True, is_admin=True)
    assert platform_allows(p, permission) == (permission in ENROL_ONLY)


@pytest.mark.parametrize(("role", "permission"), PAIRS, ids=[f"{r.value}-{p.value}" for r, p in PAIRS])
def test_scopes_only_narrow(role: Role, permission: Permission) -> None:
    """A token scoped to 'read' never gains what the role lacks, and loses what is not read."""
    scoped = principal(scopes=expand_scopes(["read"]))
    allowed = permission in ROLE_PERMISSIONS[role] and permission in expand_scopes(["read"])
    if allowed:
        authorize_project(scoped, role, permission)
    else:
        with pytest.raises(Denied):
            authorize_project(scoped, role, permission)


def test_unknown_scope_grants_nothing() -> None:
    assert expand_scopes(["everything", "admin:*"]) == frozenset()
    assert expand_scopes(None) == ALL


# --------------------------------------------------------------------------- every route


def test_every_route_has_a_permission_or_a_public_marker(app) -> None:
    assert len(guards(app)) >= 20, "the walker must see the routes of included routers"
    unguarded = [
        f"{g.method} {g.path}"
        for g in guards(app)
        if not g.permissions and not g.is_public and not g.node_authenticated
    ]
    assert unguarded == [], f"routes with neither a permission nor a public marker: {unguarded}"


def test_public_routes_are_the_expected_few(app) -> None:
    public = sorted(f"{g.method} {g.path}" for g in guards(app) if g.is_public and g.path.startswith("/api"))
    assert public == ["POST /api/v1/auth/token"]


def _fill(path: str) -> str:
    values = {
        "{project}": "alpha",
        "{email}": "nobody@example.org",
        "{token_id}": "999999",
        "{dataset}": "no-such-dataset",
        "{version}": "1",
        "{path}": "a.txt",
        "{share_id}": "999999",
        "{job_id}": "999999",
    }
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    return path


PROJECT_ROLES = {
    "owner": Role.DATA_OWNER,
    "scientist": Role.DATA_SCIENTIST,
    "checker": Role.OUTPUT_CHECKER,
    "auditor": Role.AUDITOR,
}


def test_every_project_route_follows_the_role_table(app, client, world) -> None:
    """Walk every project-scoped API route as every role, an outsider and an admin.

    Authorisation runs before the body is read, so an empty body tells the decision apart:
    refused is 403 (member without the permission) or 404 'project not found' (not a member);
    anything else means the policy let the request through.
    """
    checked = 0
    for guard in guards(app):
        if not guard.project_scoped or not guard.path.startswith("/api/") or "{project}" not in guard.path:
            continue  # MLflow routes take the project from the token or a header: test_tracking_api.py
        (permission,) = guard.permissions
        url = _fill(guard.path)
        for name, role in PROJECT_ROLES.items():
            r = client.request(guard.method, url, headers=world.h[name])
            if permission in ROLE_PERMISSIONS[role]:
                assert r.status_code != 403, f"{name} refused {guard.method} {url}: {r.text}"
                body = r.json() if r.content else {}
                assert not (
                    isinstance(body, dict) and body.get("error", {}).get("message") == "project not found"
                )
            else:
                assert r.status_code == 403, f"{name} allowed {guard.method} {url}: {r.status_code}"
        for name in ("outsider", "admin", "other_owner"):
            r = client.request(guard.method, url, headers=world.h[name])
            assert r.status_code == 404, f"{name} got {r.status_code} on {guard.method} {url}"
            assert r.json()["error"]["message"] == "project not found"
        checked += 1
    assert checked >= 20


def test_every_api_route_refuses_anonymous_callers(app, client) -> None:
    for guard in guards(app):
        if guard.is_public or not guard.path.startswith("/api/"):
            continue
        r = client.request(guard.method, _fill(guard.path))
        assert r.status_code == 401, (
            f"{guard.method} {guard.path} answered {r.status_code} without credentials"
        )
        assert r.json()["error"]["code"] == "unauthenticated"
