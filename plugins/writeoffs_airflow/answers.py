"""What an answer to a batch's approval request means, and whether the ledger takes it.

One home for two callers: the approval operators (:mod:`writeoffs_airflow.hitl`), which record the answer after
Airflow resumed the task, and the api-server's answer gate (:mod:`writeoffs_airflow.answer_gate`), which asks the
same question *before* Airflow accepts an answer, so a refused answer never closes the request and the request's
text can say why. The rules themselves are :func:`writeoffs.approvals.record_decision`'s; this module only turns a
HITL answer (option, form fields) into its arguments and sorts its refusals.

Importing this module is cheap (no Airflow, no SQLAlchemy): the plugin file of the api-server names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from writeoffs.tiers import Tier

APPROVE = "Approve"
CONFIRM = "Confirm"
REJECT = "Reject"
EXCLUDE_PARAM = "exclude_invoice_refs"
COMMENT_PARAM = "comment"
#: A step's granting decision (the other answer is always REJECT -> "rejected").
GRANTS = {"approve": "approved", "confirm": "confirmed"}


class AnswerRefused(Exception):
    """An answer the ledger refuses and a different answer could cure; ``who`` when the person may not answer
    (segregation of duties, tier entitlement), else what they answered (an exclusion, a limit)."""

    def __init__(self, reason: str, *, who: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.who = who


@dataclass(frozen=True, slots=True)
class Taken:
    decision: str
    comment: str | None
    excluded: tuple[str, ...]


def step_of(options: Sequence[str]) -> str:
    """The step a request asks for, from its options (each operator offers its own granting option)."""
    return "confirm" if CONFIRM in options else "approve"


def decision_of(step: str, option: str) -> str:
    return "rejected" if option == REJECT else GRANTS[step]


def take_answer(
    engine: Engine,
    *,
    batch_id: int,
    step: str,
    approver: str,
    option: str,
    params: Mapping[str, Any] | None,
    tiers: Sequence[Tier],
    dry_run: bool = False,
) -> Taken:
    """Record the answer (or, ``dry_run``, only check it); refusals are audited either way.

    Raises :class:`AnswerRefused` for what another answer can cure (the ledger's ``SegregationOfDuties`` and
    ``AnswerNotTaken``, matched by class), the ledger's own error for anything else (e.g. the items changed since
    they were shown: no answer can cure that, and the step fails).
    """
    from writeoffs.approval_view import parse_invoice_refs
    from writeoffs.approvals import audit_refusal, record_decision
    from writeoffs.errors import AnswerNotTaken, SegregationOfDuties

    decision = decision_of(step, option)
    params = params if isinstance(params, Mapping) else {}
    comment = params.get(COMMENT_PARAM)
    raw = params.get(EXCLUDE_PARAM) if step == "approve" and decision != "rejected" else None
    # The form's fields as the answer sent them (hostile until checked): text, and refs as text or a list of text.
    # Whether the refs are items of the batch is the ledger's rule (record_decision), not checked here.
    shape = None
    if comment is not None and not isinstance(comment, str):
        shape = "the internal comment must be text"
    elif raw is not None and not (
        isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(r, str) for r in raw))
    ):
        shape = "exclusions must be invoice refs: text, or a list of texts"
    if shape is not None:
        audit_refusal(engine, batch_id, step, approver, decision, None, (), shape)
        raise AnswerRefused(shape, who=False)
    comment = (comment or "").strip() or None
    excluded = parse_invoice_refs(raw)
    try:
        with engine.begin() as conn:
            record_decision(
                conn,
                batch_id=batch_id,
                step=step,
                approver=approver,
                decision=decision,
                tiers=tiers,
                comment=comment,
                excluded_invoice_refs=excluded,
                dry_run=dry_run,
            )
    except SegregationOfDuties as exc:
        raise AnswerRefused(str(exc), who=True) from exc
    except AnswerNotTaken as exc:
        raise AnswerRefused(str(exc), who=False) from exc
    return Taken(decision, comment, excluded)


def refusal_facts(
    engine: Engine,
    *,
    batch_id: int,
    step: str,
    tiers: Sequence[Tier],
    refused: str,
    reason: str,
    deadline: datetime | None,
    now: datetime,
) -> dict[str, object]:
    """What :func:`writeoffs.approval_view.refusal_lines` says about a refusal: who, why, until when the request is
    open and who may still decide (:func:`writeoffs.approvals.eligible_answerers`; nobody, if none is left)."""
    from sqlalchemy import select

    from writeoffs.approvals import eligible_answerers
    from writeoffs.db.schema import writeoff_batches
    from writeoffs.errors import ApprovalError

    with engine.connect() as conn:
        tier = conn.execute(select(writeoff_batches.c.tier).where(writeoff_batches.c.id == batch_id)).scalar_one()
        try:
            eligible: tuple[str, ...] = eligible_answerers(conn, batch_id, step, tiers)
        except ApprovalError:
            eligible = ()
    until = deadline.strftime("%Y-%m-%d %H:%M %Z").strip() if deadline is not None and deadline > now else None
    return {
        "refused": refused,
        "reason": reason,
        "step": step,
        "tier": tier,
        "eligible": eligible,
        "open_until": until,
    }
