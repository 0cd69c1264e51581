"""Introspection of the app's routes: which permission (or public marker) guards each one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from sanctum.access.permissions import Permission
from sanctum.api.deps import InProject, Require, public


@dataclass(frozen=True)
class Guard:
    path: str
    method: str
    permissions: frozenset[Permission]
    project_scoped: bool
    is_public: bool
    node_authenticated: bool = False  # guarded by a registered node's signature, not a user's permission


def _calls(dependant: Dependant) -> Iterator[object]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def api_routes(app: FastAPI) -> Iterator[object]:
    """Every API route as the app serves it, including those of included routers (FastAPI keeps
    included routers nested, so ``app.routes`` alone would miss them)."""
    for context in routing.iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def guards(app: FastAPI) -> list[Guard]:
    result = []
    for route in api_routes(app):
        calls = list(_calls(route.dependant))
        perms = frozenset(c.permission for c in calls if isinstance(c, Require | InProject))
        project_scoped = any(isinstance(c, InProject) for c in calls)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            by_node = any(getattr(c, "node_authenticated", False) for c in calls)
            result.append(
                Guard(route.path, method, perms, project_scoped, any(c is public for c in calls), by_node)
            )
    return result
