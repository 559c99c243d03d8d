"""The request operators: :class:`BatchDecisionOperator` (ask, park, record the answer or the timeout, re-open
after a refusal) and its two steps, :class:`BatchApprovalOperator` and :class:`BatchConfirmOperator`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.exceptions import AirflowSkipException, DownstreamTasksSkipped, TaskAwaitingInput

from writeoffs.tiers import SYSTEM_ACTOR  # a constant; the module imports nothing heavy
from writeoffs_airflow.answers import (  # the answer's vocabulary: one home, shared with the api-server's gate
    APPROVE,
    CONFIRM,
    EXCLUDE_PARAM,
    REJECT,
)
from writeoffs_airflow.hitl.config import (
    _engine,
    approval_params,
    batch_tiers,
    candidates_link,
    confirm_params,
    hitl_users,
    offer_exclusions,
    reports_dir,
)
from writeoffs_airflow.hitl.notifier import ApproverNotifier, send_notice

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from writeoffs.approval_view import BatchView
    from writeoffs.tiers import Tier


#: Retry delay of the request tasks: short, because the usual retry of a request task re-asks people whose answer
#: Airflow lost (see BatchDecisionOperator.execute); they must not wait the DAG's retry delay for it.
HITL_RETRY_DELAY = timedelta(seconds=5)


def _load_view(engine: Engine, batch_id: int) -> BatchView:
    from writeoffs.approval_view import load_batch_view

    with engine.connect() as conn:
        return load_batch_view(conn, batch_id)


class BatchDecisionOperator(HITLOperator):
    """Base: one HITL request for one batch and step; subclasses say when to ask and what to show."""

    template_fields: Sequence[str] = (*HITLOperator.template_fields, "batch_id")
    ui_color = "#f5e6c8"
    step: ClassVar[str]
    approve_option: ClassVar[str]
    #: Batch statuses in which this step asks; any other status skips the task (decided, rejected, expired).
    asks_when: ClassVar[tuple[str, ...]]

    def __init__(self, *, batch_id: int | str | Any, **kwargs: Any) -> None:
        kwargs.setdefault("subject", f"Write-off batch: {self.step}")
        kwargs.setdefault("notifiers", [ApproverNotifier()])
        # The wait is bounded by the tier's response timeout (set in execute); an execution_timeout from
        # default_args would be taken as the response timeout by HITLOperator, or race the parking of the task.
        kwargs["execution_timeout"] = None
        # A retry here is how Airflow 3.3.2 handles an answer that arrived before the scheduler saw the task park:
        # the request is asked again at once (see execute).
        kwargs["retry_delay"] = HITL_RETRY_DELAY
        kwargs.setdefault("response_timeout", timedelta(hours=48))
        super().__init__(options=[self.approve_option, REJECT], multiple=False, **kwargs)
        self.batch_id = batch_id

    # -- hooks for subclasses
    def prepare(self, engine: Engine, view: BatchView, tiers: Sequence[Tier]) -> BatchView:
        return view

    def render(
        self, engine: Engine, view: BatchView, tier: Tier, *, answerers: Sequence[str], deadline: str
    ) -> tuple[str, str]:
        raise NotImplementedError

    def timeout_decision(self, view: BatchView, tier: Tier, tiers: Sequence[Tier]) -> str:
        return "expired"

    def timeout_text(self, view: BatchView, tier: Tier, tiers: Sequence[Tier]) -> str:
        """What a timeout does, in words, from the same decision :meth:`_time_out` records."""
        from writeoffs.tiers import next_tier

        if self.timeout_decision(view, tier, tiers) == "escalated":
            up = next_tier(tier.name, tiers)
            return f"escalates to the {up.name if up else '?'} tier (never approved by default)"
        return "the batch expires, nothing is posted"

    # -- Airflow entry points
    def execute(self, context: Any) -> Any:
        from writeoffs import audit
        from writeoffs.approval_view import deadline_text, items_digest, pending_items
        from writeoffs.approvals import eligible_answerers
        from writeoffs.tiers import tier_named

        engine = _engine()
        batch_id = int(self.batch_id)
        tiers = batch_tiers(engine, batch_id)
        view = _load_view(engine, batch_id)
        if view.status not in self.asks_when:
            raise AirflowSkipException(f"batch {batch_id} is {view.status!r}: no {self.step} decision to ask for")
        view = self.prepare(engine, view, tiers)
        tier = tier_named(view.tier, tiers)
        with engine.connect() as conn:
            people = eligible_answerers(conn, batch_id, self.step, tiers)
        self.assigned_users = hitl_users(people)  # type: ignore[assignment]
        self.response_timeout = timedelta(hours=tier.response_timeout_hours)
        deadline = datetime.now(UTC) + self.response_timeout
        when = deadline_text(deadline, self.timeout_text(view, tier, tiers))
        self.subject, self.body = self.render(engine, view, tier, answerers=people, deadline=when)
        # For the notifier (same process): the summary the assigned people get by e-mail and Slack.
        self.notice_lines = (
            f"{self.step.capitalize()} step, batch {batch_id} ({view.entity_code}, business date "
            f"{view.as_of_date.isoformat()}), tier {tier.name}",
            f"Who may answer: {', '.join(people)}",
            f"Answer by: {when}",
        )
        digest = items_digest(pending_items(view))
        if context["ti"].try_number > 1:
            # Airflow 3.3.2 loses an answer given the instant a request opens: the scheduler retries the task and the
            # answered request is archived (see docs/approvals.md). The batch is still undecided in the ledger (else
            # it was skipped above), so the people are asked again, and told why.
            try_number = context["ti"].try_number
            self.log.warning("Batch %s: %s request opened again (try %s)", batch_id, self.step, try_number)
            self.notice_lines += (
                "Asked again: an answer given within a second or two of the earlier request opening can be lost by "
                "Airflow 3.3.2; if you answered, please answer once more.",
            )
        with engine.begin() as conn:
            audit.append(
                conn,
                actor=SYSTEM_ACTOR,
                action=f"approval.requested.{self.step}",
                object_type="writeoff_batch",
                object_id=batch_id,
                details={
                    "tier": tier.name,
                    "assigned_users": list(people),
                    "deadline": deadline.isoformat(),
                    "items_digest": digest,
                    "dag_run_id": context["run_id"],
                    # Where the request lives in Airflow: reminders link to it (writeoffs.approval_reminders).
                    "task_id": context["ti"].task_id,
                    "map_index": context["ti"].map_index,
                },
            )
        try:
            return super().execute(context)
        except TaskAwaitingInput as park:
            # Carry what the approver was shown into the resume call: the deadline (refusals re-open the request
            # for the remaining time only) and the tier the request went to.
            park.kwargs = {"deadline": deadline.isoformat(), "tier": tier.name, "digest": digest}
            raise

    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any],
        deadline: str | None = None,
        tier: str | None = None,
        digest: str | None = None,
    ) -> dict[str, Any]:
        result = self._complete(context, event, deadline=deadline, tier=tier, digest=digest)
        skip = self.steps_that_no_longer_apply(result["decision"])
        if skip:
            # Skipped by the execution API before they are scheduled: a step that cannot apply any more costs no
            # worker slot (before: each started, read the batch and skipped itself, 16-18 tasks a cycle).
            ti = context["ti"]
            ti.xcom_push(key="return_value", value=result)  # the skip path pushes no return value by itself
            self.log.info("Batch %s: %s; not needed any more: %s", self.batch_id, result["decision"], skip)
            raise DownstreamTasksSkipped(tasks=[(task_id, ti.map_index) for task_id in skip])
        return result

    def steps_that_no_longer_apply(self, decision: str) -> list[str]:
        """The later steps of this batch that the recorded ``decision`` makes moot: after an approval the further
        approval (escalation) steps; after a rejection or expiry everything that follows (confirm, post); after an
        escalation or a confirmation nothing. A step skipped here would otherwise have skipped itself."""
        if decision in ("escalated", "confirmed"):
            return []
        later = [t for t in self.get_flat_relatives(upstream=False) if t.task_group is self.task_group]
        if decision == "approved":
            later = [t for t in later if isinstance(t, BatchApprovalOperator)]
        return sorted(t.task_id for t in later)

    def _complete(
        self,
        context: Any,
        event: dict[str, Any],
        *,
        deadline: str | None,
        tier: str | None,
        digest: str | None,
    ) -> dict[str, Any]:
        from writeoffs_airflow.answers import AnswerRefused, take_answer

        engine = _engine()
        batch_id = int(self.batch_id)
        tiers = batch_tiers(engine, batch_id)

        if event.get("error_type") == "timeout":
            return self._time_out(engine, batch_id, tiers)

        ret = super().execute_complete(context=context, event=event)
        user = ret["responded_by_user"] or {}
        approver = str(user.get("name") or user.get("id") or "")
        try:
            taken = take_answer(
                engine,
                batch_id=batch_id,
                step=self.step,
                approver=approver,
                option=ret["chosen_options"][0],
                params=ret["params_input"],
                tiers=tiers,
            )
        except AnswerRefused as refused:
            # Normally the api-server's answer gate refused this before Airflow took it (and the request never
            # closed); this is the answer that got past it (a change in between, or no gate installed). Refused and
            # audited; someone entitled may still answer within the deadline.
            self.log.error("Batch %s: answer by %r refused: %s", batch_id, approver, refused.reason)
            self._explain_refusal(context, engine, batch_id, tiers, approver, refused.reason, deadline)
            self._reopen(context, deadline=deadline, tier=tier, digest=digest)
            return self._time_out(engine, batch_id, tiers)
        decision, excluded = taken.decision, taken.excluded
        self.log.info("Batch %s: %s %s by %s", batch_id, self.step, decision, approver)
        # The comment stays out of XCom: it is internal and lives in the ledger's approvals row.
        return {
            "batch_id": batch_id,
            "step": self.step,
            "decision": decision,
            "approver": approver,
            "excluded_invoice_refs": list(excluded),
        }

    def _time_out(self, engine: Engine, batch_id: int, tiers: Sequence[Tier]) -> dict[str, Any]:
        from writeoffs.approvals import record_decision
        from writeoffs.tiers import tier_named

        view = _load_view(engine, batch_id)
        decision = self.timeout_decision(view, tier_named(view.tier, tiers), tiers)
        with engine.begin() as conn:
            record_decision(
                conn,
                batch_id=batch_id,
                step=self.step,
                approver=SYSTEM_ACTOR,
                decision=decision,
                tiers=tiers,
                comment=f"no valid response within the {view.tier} tier's response timeout",
            )
        self.log.warning("Batch %s: no valid %s response before the deadline: %s", batch_id, self.step, decision)
        return {"batch_id": batch_id, "step": self.step, "decision": decision, "approver": SYSTEM_ACTOR}

    def _explain_refusal(
        self,
        context: Any,
        engine: Engine,
        batch_id: int,
        tiers: Sequence[Tier],
        refused: str,
        reason: str,
        deadline: str | None,
    ) -> str:
        """Tell the people concerned why an answer was refused and who may decide: the task log, and an e-mail and
        Slack notice to the refused user and everyone who may still answer.

        Not the request's body: Airflow 3.3 keeps a task instance's request text as first written (the execution
        API's upsert only clears the response of an existing request, and a retry carries the same row over to the
        new try), so a task cannot rewrite it. The api-server's answer gate, which refuses answers before Airflow
        takes them, does (:mod:`writeoffs_airflow.answer_gate`). See docs/approvals.md.
        """
        from writeoffs.approval_view import refusal_lines, refusal_markdown, subject
        from writeoffs_airflow.answers import refusal_facts

        facts = refusal_facts(
            engine,
            batch_id=batch_id,
            step=self.step,
            tiers=tiers,
            refused=refused,
            reason=reason,
            deadline=datetime.fromisoformat(deadline) if deadline else None,
            now=datetime.now(UTC),
        )
        view = _load_view(engine, batch_id)
        eligible = facts["eligible"]
        block = refusal_markdown(**facts)
        recipients = tuple(dict.fromkeys(p for p in (refused, *eligible) if p))
        self.log.warning("Refusal explained to %s:\n%s", ", ".join(recipients), block)
        send_notice(
            context,
            recipients=recipients,
            subject=f"Answer refused: {subject(view, self.step)}",
            lines=refusal_lines(**facts),  # type: ignore[arg-type]
        )
        return block

    def _remaining(self, deadline: str | None) -> timedelta:
        if not deadline:
            return self.response_timeout or timedelta(0)
        return datetime.fromisoformat(deadline) - datetime.now(UTC)

    def _reopen(self, context: Any, *, deadline: str | None, tier: str | None, digest: str | None) -> None:
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        remaining = self._remaining(deadline)
        if remaining <= timedelta(0):
            return  # out of time: the caller times the step out like an unanswered request
        # Upserting an answered request clears its response (Airflow keeps one request per task instance);
        # subject, body and assigned users stay as first shown, whatever is sent here (Airflow 3.3's execution
        # API ignores them for an existing request): that is why refusals are explained by notice, not in the body.
        upsert_hitl_detail(
            ti_id=context["task_instance"].id,
            options=self.options,
            subject=self.subject,
            body=self.body,
            defaults=self.defaults,
            multiple=self.multiple,
            params=self.serialized_params,
            assigned_users=self.assigned_users,
        )
        raise TaskAwaitingInput(
            method_name="execute_complete",
            kwargs={"deadline": deadline, "tier": tier, "digest": digest},
            timeout=remaining,
        )


class BatchApprovalOperator(BatchDecisionOperator):
    """Step 1: approve or reject the batch, optionally excluding invoices, with an internal comment.

    Asks the approvers of the batch's tier. A batch whose tier does not cover its largest item is first routed
    up (recorded as ``escalated`` by the system), so an approver never sees a decision above their limit.
    On timeout the batch expires, or escalates when the tier says ``on_timeout: escalate``; the DAG places
    further instances of this operator after the first to ask the higher tier.
    """

    step = "approve"
    approve_option = APPROVE
    asks_when = ("proposed", "awaiting_approval")

    def __init__(self, *, final: bool = False, **kwargs: Any) -> None:
        # Always the form's own fields: inside a DAG, Airflow passes the DAG-level params (``as_of``) in as
        # ``params`` before this runs, and HITLOperator keeps only params whose source is "task" -- a setdefault
        # left the form with no exclusion or comment field at all.
        kwargs["params"] = approval_params()
        super().__init__(**kwargs)
        #: The last approval attempt in the DAG: a timeout expires the batch even if the tier says escalate.
        self.final = final

    def prepare(self, engine: Engine, view: BatchView, tiers: Sequence[Tier]) -> BatchView:
        from writeoffs.approvals import route_to_entitled_tier

        # A batch above its tier's item or batch limit goes up a tier before anyone is asked (never split).
        if route_to_entitled_tier(engine, view.batch_id, tiers) != view.tier:
            view = _load_view(engine, view.batch_id)
        return view

    def render(
        self, engine: Engine, view: BatchView, tier: Tier, *, answerers: Sequence[str], deadline: str
    ) -> tuple[str, str]:
        from decimal import Decimal

        from writeoffs.approval_view import (
            exclusion_choices,
            pending_items,
            subject,
            summary_markdown,
            write_candidates_csv,
        )

        csv_path = write_candidates_csv(reports_dir(), view)
        # The form's pick list: this batch's items as they are now (the request is built per batch at run time).
        offer_exclusions(self.params.get_param(EXCLUDE_PARAM), exclusion_choices(view))
        total = sum((i.amount for i in pending_items(view)), Decimal(0))
        confirmers = ", ".join(tier.answerers("confirm"))
        if tier.four_eyes(view.currency, total):
            confirmation = f"by a second person ({confirmers}), not the approver: four eyes"
        else:
            confirmation = f"by one of {confirmers} (the approver may confirm: below the four-eyes amount)"
        body = summary_markdown(
            view,
            candidates_link=candidates_link(csv_path, view.batch_id),
            limit=tier.limit_for(view.currency),
            confirmation=confirmation,
            answerers=answerers,
            deadline=deadline,
        )
        return subject(view, "approve"), body

    def timeout_decision(self, view: BatchView, tier: Tier, tiers: Sequence[Tier]) -> str:
        from writeoffs.tiers import next_tier

        if tier.on_timeout == "escalate" and not self.final and next_tier(tier.name, tiers) is not None:
            return "escalated"
        return "expired"


class BatchConfirmOperator(BatchDecisionOperator):
    """Step 2: show exactly what will be posted (after exclusions); Confirm posts, Reject ends the batch."""

    step = "confirm"
    approve_option = CONFIRM
    asks_when = ("approved",)

    def __init__(self, **kwargs: Any) -> None:
        kwargs["params"] = confirm_params()  # see BatchApprovalOperator.__init__
        super().__init__(**kwargs)

    def render(
        self, engine: Engine, view: BatchView, tier: Tier, *, answerers: Sequence[str], deadline: str
    ) -> tuple[str, str]:
        from writeoffs.approval_view import candidates_csv_path, confirmation_markdown, subject
        from writeoffs.approval_view.load import confirmation_facts

        with engine.connect() as conn:
            facts = confirmation_facts(conn, view)
        body = confirmation_markdown(
            view,
            facts.excluded_refs,
            approved_by=facts.approved_by,
            debit_account=facts.debit_account,
            credit_account=facts.credit_account,
            candidates_link=candidates_link(candidates_csv_path(reports_dir(), view), view.batch_id),
            answerers=answerers,
            deadline=deadline,
        )
        return subject(view, "confirm"), body
