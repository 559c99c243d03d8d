"""The reversal approval step: a HITL request to the approvers entitled to the write-off's amount.

The request is built at run time from the plan the ``request`` task computed in the ledger
(:func:`writeoffs.reversal.plan_reversal`): ``assigned_users`` are the entitled tier's approvers and those above
it, minus the requester. The answer's identity is Airflow's authenticated responder; the ledger checks it again
when the reversal posts (requester != approver, approver entitled), so Airflow's ``assigned_users`` filter is a
first line, not the control.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.exceptions import AirflowSkipException

from writeoffs_airflow.hitl import ApproverNotifier, hitl_users

APPROVE = "Approve reversal"
REJECT = "Reject"
#: How long the request stays open; unanswered = not reversed.
RESPONSE_TIMEOUT = timedelta(hours=72)


def _cell(value: object, limit: int = 120) -> str:
    """A value from the ledger (customer-supplied in part) for the request: cut, then rendered literally."""
    from writeoffs.errors import shorten
    from writeoffs.safe_text import md

    return md(shorten(str(value), limit))


class ReversalApprovalOperator(HITLOperator):
    """Ask an entitled approver (not the requester) to approve the reversal planned by ``plan_task_id``."""

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Approve a write-off reversal")
        kwargs.setdefault("notifiers", [ApproverNotifier()])
        kwargs["execution_timeout"] = None  # bounded by RESPONSE_TIMEOUT, not by default_args' execution_timeout
        super().__init__(options=[APPROVE, REJECT], multiple=False, response_timeout=RESPONSE_TIMEOUT, **kwargs)
        self.plan_task_id = plan_task_id

    def execute(self, context: Any) -> Any:
        from writeoffs.errors import shorten

        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id)
        self.assigned_users = hitl_users(plan["approvers"])  # type: ignore[assignment]
        # The subject is plain text (cut); the body is Markdown (cut and escaped).
        ref, requester = shorten(str(plan["invoice_ref"]), 40), shorten(plan["requested_by"], 40)
        self.subject = (
            f"Reverse write-off {plan['writeoff_id']}: {ref} {plan['amount']} {plan['currency']} "
            f"(tier {plan['tier']}, requested by {requester})"
        )
        self.body = "\n".join(
            [
                f"**{_cell(plan['requested_by'], 60)}** asks to undo a posted write-off. Approving posts the mirror",
                "journal entry and puts the receivable back on the books; rejecting changes nothing.",
                "",
                "| | |",
                "|---|---|",
                f"| Write-off | {plan['writeoff_id']} |",
                f"| Invoice | {_cell(plan['invoice_ref'])} ({_cell(plan['entity_code'])}) |",
                f"| Amount | {plan['amount']} {plan['currency']} |",
                f"| Reason | {_cell(plan['reason'])}: {_cell(plan['reason_text'])} |",
                f"| Note | {_cell(plan.get('note') or '-', 300)} |",
                f"| Entitled tier | {plan['tier']} or higher (policy {_cell(plan['policy_version'])}) |",
                f"| May answer | {', '.join(_cell(a, 40) for a in plan['approvers'])} |",
            ]
        )
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("error_type") == "timeout":
            raise AirflowSkipException("no answer before the deadline: the write-off is not reversed")
        ret = super().execute_complete(context=context, event=event)
        user = ret["responded_by_user"] or {}
        responder = str(user.get("name") or user.get("id") or "")
        decision = "approved" if ret["chosen_options"] == [APPROVE] else "rejected"
        self.log.info("Reversal request %s by %s", decision, responder)
        return {"decision": decision, "responder": responder}
