"""The export state machine as data, and the one function that moves a request along it.

::

    draft ─submit→ submitted ─(first vote)→ in_review ─(all verdicts in)→ approved ─release→ released
      ↑               │                        │                            └──→ rejected (any reject)
      └── returned ←──┴──────── return ────────┘
    withdrawn: by the requester, from any state before release (and not after a decision to reject)

Why every move goes through ``move``: each one checks the current state, who acts (their role's
permission, and whether they are the requester), that a reason is given where one is needed, and
writes its audit event — who, from, to, why — in the caller's transaction. A move that is refused
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import role_allows
from sanctum.airlock.models import ExportRequest
from sanctum.errors import Conflict, Denied, InvalidInput
from sanctum.projects.service import ProjectContext


class ExportState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"
    RELEASED = "released"
    WITHDRAWN = "withdrawn"


S = ExportState
EDITABLE = frozenset({S.DRAFT, S.RETURNED})  # the requester may change files and text
UNDER_REVIEW = frozenset({S.SUBMITTED, S.IN_REVIEW})  # reviewers vote or return
DECIDED = frozenset({S.APPROVED, S.REJECTED, S.RELEASED, S.WITHDRAWN})  # every verdict may be shown


class Who(StrEnum):
    REQUESTER = "requester"  # the person who made the request, holding the permission
    OTHER = "other"  # anyone holding the permission except the requester
    ANYONE = "anyone"  # anyone holding the permission


@dataclass(frozen=True)
class Transition:
    sources: frozenset[ExportState]
    target: ExportState
    permission: Permission
    who: Who
    needs_reason: bool = False


TRANSITIONS: dict[str, Transition] = {
    "submit": Transition(EDITABLE, S.SUBMITTED, Permission.EXPORTS_REQUEST, Who.REQUESTER),
    # A vote: by a reviewer who is not the requester; the first one starts the review.
    "review": Transition(UNDER_REVIEW, S.IN_REVIEW, Permission.EXPORTS_REVIEW, Who.OTHER),
    "return": Transition(UNDER_REVIEW, S.RETURNED, Permission.EXPORTS_REVIEW, Who.OTHER, needs_reason=True),
    "withdraw": Transition(
        frozenset({S.DRAFT, S.SUBMITTED, S.IN_REVIEW, S.RETURNED, S.APPROVED}),
        S.WITHDRAWN,
        Permission.EXPORTS_REQUEST,
        Who.REQUESTER,
    ),
    "release": Transition(frozenset({S.APPROVED}), S.RELEASED, Permission.EXPORTS_RELEASE, Who.ANYONE),
    # Consequences, not choices: they follow from the votes on record (``reviews.decide``), from a
    # resubmission of a request that already holds votes, or from stored bytes that no longer match
    # what was reviewed (that file's reviews go and the request goes back to review).
    "approve": Transition(frozenset({S.IN_REVIEW}), S.APPROVED, Permission.AIRLOCK_READ, Who.ANYONE),
    "reject": Transition(
        frozenset({S.IN_REVIEW}), S.REJECTED, Permission.AIRLOCK_READ, Who.ANYONE, needs_reason=True
    ),
    "resume": Transition(frozenset({S.SUBMITTED}), S.IN_REVIEW, Permission.AIRLOCK_READ, Who.ANYONE),
    "reset": Transition(
        frozenset({S.SUBMITTED, S.IN_REVIEW, S.APPROVED, S.RELEASED}),
        S.IN_REVIEW,
        Permission.AIRLOCK_READ,
        Who.ANYONE,
        needs_reason=True,
    ),
}


def allowed(ctx: ProjectContext, request: ExportRequest, action: str) -> bool:
    """Whether ``ctx`` may take ``action`` now (for showing controls; ``move`` enforces it)."""
    try:
        check(ctx, request, action)
    except (Denied, Conflict):
        return False
    return True


def check(ctx: ProjectContext, request: ExportRequest, action: str) -> None:
    """Refuse (Denied / Conflict) unless ``ctx`` may take ``action`` on ``request`` in its state."""
    transition = TRANSITIONS[action]
    if not role_allows(ctx.role, transition.permission, ctx.principal.scopes):
        raise Denied(f"your role {ctx.role.value} may not {transition.permission.value}")
    is_requester = request.requested_by_id == ctx.principal.user_id
    if transition.who is Who.REQUESTER and not is_requester:
        raise Denied("only the person who made this request may do that", code="not_requester")
    if transition.who is Who.OTHER and is_requester:
        raise Denied("you cannot review your own request: reviews must be independent", code="own_request")
    if request.state not in transition.sources:
        raise Conflict(f"not possible while the request is {request.state}", code="wrong_state")


def move(
    session: Session,
    ctx: ProjectContext,
    request: ExportRequest,
    action: str,
    reason: str = "",
    *,
    details: dict[str, object] | None = None,
) -> None:
    """Take ``action`` on ``request`` as ``ctx``, or raise without changing anything."""
    transition = TRANSITIONS[action]
    check(ctx, request, action)
    if transition.needs_reason and not reason.strip():
        raise InvalidInput(f"say why ({action} needs a reason)", code="reason_required")
    source = request.state
    now = datetime.now(UTC)
    request.state = transition.target.value
    request.state_reason = reason
    if transition.target is S.SUBMITTED:
        request.submitted_at = now
    elif transition.target in (S.APPROVED, S.REJECTED):
        request.decided_at = now
    elif transition.target is S.RELEASED:
        request.released_at, request.released_by_id = now, ctx.principal.user_id
    ctx.record(
        session,
        f"export.{action}",
        target=f"export:{request.number}",
        details={"from": source, "to": request.state, "reason": reason[:1000], **(details or {})},
    )
