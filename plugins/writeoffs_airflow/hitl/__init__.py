"""Human-in-the-loop operators for write-off batches (Airflow's standard-provider HITL, Airflow 3.3).

One request per batch and step, never per invoice. The operators only *collect* answers: whether an answer may be
recorded is decided by ``writeoffs.approvals.record_decision`` (segregation of duties, tier entitlement and limit,
items unchanged), and posting re-checks the recorded approval again. Airflow's own ``assigned_users`` check
(HTTP 403 for anyone else) is a first filter, not the control: it depends on the auth manager configuration
(``simple_auth_manager_all_admins`` turns it off).

Waiting is Airflow 3.3's ``awaiting_input`` state: no worker slot and no triggerer are held while a batch waits;
the scheduler enforces ``response_timeout`` and resumes the task with a timeout event, which we record as
``expired`` or ``escalated`` (per tier config), never as an approval.

A refused answer (the preparer approving their own batch, a mistyped exclusion) is normally refused by the
api-server's answer gate before Airflow takes it (:mod:`writeoffs_airflow.answer_gate`): the request stays open and
its text says at the top who was refused, why and who may decide. The task checks again when it records the answer
(:func:`writeoffs_airflow.answers.take_answer`); an answer refused there (the batch changed in between, no gate
installed) is audited and the *same* request is re-opened for the remaining time: the deadline travels in the park
kwargs, so refusals cannot extend the response window. A task cannot rewrite the request's text, so that refusal is
explained by notice (e-mail, Slack) and in the task log.

Every request notifies the people it is assigned to (``ApproverNotifier``: e-mail and Slack with a link to the
request's page in the UI).

Layout: :mod:`~writeoffs_airflow.hitl.config` (governing tiers, ledger engine, reports store and candidate link,
assigned users, the form's fields), :mod:`~writeoffs_airflow.hitl.notifier` (:class:`ApproverNotifier` and the
notices it and refusals send), :mod:`~writeoffs_airflow.hitl.operators` (the request operators) and
:mod:`~writeoffs_airflow.hitl.tasks` (claiming and posting batches). Every name callers used from
``writeoffs_airflow.hitl`` is re-exported here (private helpers stay in their modules).
"""

from writeoffs_airflow.hitl.config import (
    approval_params,
    batch_tiers,
    candidates_link,
    confirm_params,
    exclusion_param,
    hitl_users,
    offer_exclusions,
    reports_dir,
)
from writeoffs_airflow.hitl.notifier import ApproverNotifier, request_link, send_notice
from writeoffs_airflow.hitl.operators import (
    HITL_RETRY_DELAY,
    BatchApprovalOperator,
    BatchConfirmOperator,
    BatchDecisionOperator,
)
from writeoffs_airflow.hitl.tasks import (
    business_date_of,
    claim_batches,
    post_auto,
    post_confirmed,
)

__all__ = [
    "HITL_RETRY_DELAY",
    "ApproverNotifier",
    "BatchApprovalOperator",
    "BatchConfirmOperator",
    "BatchDecisionOperator",
    "approval_params",
    "batch_tiers",
    "business_date_of",
    "candidates_link",
    "claim_batches",
    "confirm_params",
    "exclusion_param",
    "hitl_users",
    "offer_exclusions",
    "post_auto",
    "post_confirmed",
    "reports_dir",
    "request_link",
    "send_notice",
]
