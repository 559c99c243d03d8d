"""Verifying the chain against its checkpoint, and the chain status one page shows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from writeoffs import audit
from writeoffs.audit import AuditFinding, Checkpoint
from writeoffs.audit_anchor.hook import bound
from writeoffs.audit_anchor.store import (
    CheckpointInvalid,
)
from writeoffs.db.schema import audit_log


def _last_checkpoint(store, key: bytes) -> tuple[Checkpoint | None, list[AuditFinding]]:
    """The last checkpoint of the chain, or None with the finding that it is not valid (written without the key)."""
    try:
        return store.last(key), []
    except CheckpointInvalid as exc:
        return None, [AuditFinding(0, str(exc))]


def verify_anchored(engine: Engine) -> list[AuditFinding]:
    """Verify the whole chain with the key and against the last checkpoint; findings (empty: intact and anchored).

    The checkpoint is read before the database, so every row it names was committed before the read: a posting
    committing meanwhile cannot make the head look truncated. No checkpoint while the ledger has audit rows is a
    finding (fail closed), and so is a checkpoint line not written with the key.
    """
    key, store = bound(engine)
    cp, findings = _last_checkpoint(store, key)
    with engine.connect() as conn:
        findings.extend(audit.verify(conn, key=key, checkpoint=cp))
        rows = audit.count(conn)
    if cp is None and rows and not findings:
        findings.append(
            AuditFinding(0, f"no checkpoint of the audit chain at {store.path}: {rows} audit row(s) are not anchored")
        )
    return findings


# --- the status one page shows -------------------------------------------------------------------------------------

#: Rows a page view verifies at most: the latest reconciliation run is looked for among the newest this many rows,
#: and without one only they are verified.
LIVE_MAX = 20_000


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The audit chain's state as one page can afford to establish it (:func:`chain_status`).

    ``intact`` is None when nothing could be verified (no key: fail closed, shown as not verified, never as intact).
    """

    intact: bool | None
    head: int  # the newest audit row
    broken_at: int | None = None
    problem: str | None = None
    checkpoint: Checkpoint | None = None
    recon_run: str | None = None  # the latest reconciliation run that verified the whole chain
    recon_date: str | None = None  # its business date
    recon_row: int | None = None  # its own audit row: every row before it existed when it verified the chain
    recon_clean: bool | None = None
    live_from: int | None = None  # rows live_from..head were verified for this view
    own_rows: tuple[int, ...] = ()  # rows verified with their links for this view
    unverified_below: int | None = None  # rows below this were verified by nobody (no reconciliation yet)

    def headline(self) -> str:
        if self.intact is None:
            return f"audit chain not verified: {self.problem}"
        if not self.intact:
            return f"audit chain BROKEN at row {self.broken_at}: {self.problem}"
        anchored = (
            f", anchored at row {self.checkpoint.seq} ({self.checkpoint.at})"
            if self.checkpoint is not None
            else " (nothing to anchor yet)"
        )
        return f"audit chain intact up to row {self.head}{anchored}"

    def basis(self) -> str:
        """What was verified, and by whom: the cheap part now, the rest by the latest reconciliation run."""
        parts = []
        if self.recon_run is not None:
            parts.append(
                f"rows 1-{(self.recon_row or 1) - 1} verified in full with the key by reconciliation run"
                f" {self.recon_run} (business date {self.recon_date})"
            )
        elif self.unverified_below:
            parts.append(
                f"rows 1-{self.unverified_below - 1} not verified here: no reconciliation run among the newest"
                f" {LIVE_MAX:,} rows"
            )
        if self.live_from is not None:
            parts.append(f"rows {self.live_from}-{self.head} verified now")
        if self.own_rows:
            parts.append(f"this invoice's {len(self.own_rows)} audit row(s) and their links verified now")
        if self.checkpoint is not None:
            parts.append(f"row {self.checkpoint.seq} matches the checkpoint kept outside the ledger")
        return "; ".join(parts)


def chain_status(engine: Engine, own_rows: Iterable[int] = ()) -> ChainStatus:
    """The chain's status without walking a million rows per page view.

    The whole chain is verified by reconciliation (check ``audit_chain``); its latest run's verdict is reused, and
    only what that run could not see is verified now: the rows from that run's own audit row to the head, the rows
    named in ``own_rows`` (each with its MAC and both links) and the row the last checkpoint anchors. A row edited
    below the latest run's and outside ``own_rows`` after that run shows at the next reconciliation, not here.
    """
    try:
        key, store = bound(engine)
    except audit.AuditKeyMissing as exc:
        return ChainStatus(None, 0, problem=str(exc))
    cp, findings = _last_checkpoint(store, key)
    cols = [audit_log.c[name] for name in audit.CHAIN_COLUMNS]
    wanted = sorted({int(i) for i in own_rows})
    with engine.connect() as conn:
        # Two statements in the usual case. The run is looked for among the newest LIVE_MAX rows only (a primary-key
        # range: the action has no index); an older run would leave more rows to verify than a page can afford.
        newest = func.coalesce(select(func.max(audit_log.c.id)).scalar_subquery(), 0)
        recon = conn.execute(
            select(audit_log.c.id, audit_log.c.object_id, audit_log.c.details)
            .where(audit_log.c.id > newest - LIVE_MAX, audit_log.c.action == "recon.run")
            .order_by(audit_log.c.id.desc())
            .limit(1)
        ).first()
        run = _recon_verdict(conn, recon) if recon is not None else None
        if run is not None and not run["clean"]:
            findings.extend(run["findings"])
        since = audit_log.c.id >= recon.id - 1 if recon is not None else audit_log.c.id > newest - LIVE_MAX
        # At most LIVE_MAX + 1 rows either way; the LIMIT also keeps the planner on the primary key when the table's
        # statistics are stale (a bulk load not yet analysed: a parallel scan of every row otherwise).
        rows = conn.execute(select(*cols).where(since).order_by(audit_log.c.id).limit(LIVE_MAX + 2)).all()
        head = int(rows[-1][0]) if rows else 0
        start = max(1, recon.id - 1) if recon is not None else max(1, head - LIVE_MAX + 1)
        findings.extend(_walk_from(key, rows, start))
        near = sorted({j for i in wanted if i < start for j in (i - 1, i, i + 1) if j >= 1})
        by_id = {int(r[0]): r for r in conn.execute(select(*cols).where(audit_log.c.id.in_(near)))} if near else {}
        for i in (i for i in wanted if i < start):
            findings.extend(_check_one(key, i, by_id))
        if cp is not None:
            in_rows = {int(r[0]): str(r[-1]) for r in rows if int(r[0]) == cp.seq}
            at_seq = (
                in_rows.get(cp.seq)
                if cp.seq >= start
                else conn.execute(select(audit_log.c.row_hash).where(audit_log.c.id == cp.seq)).scalar()
            )
            findings.extend(audit.check_against(cp, head, at_seq))
        elif head and not findings:
            findings.append(AuditFinding(0, f"no checkpoint of the audit chain: {head} audit row(s) are not anchored"))
    first = min(findings, key=lambda f: f.row_id) if findings else None
    return ChainStatus(
        intact=not findings,
        head=head,
        broken_at=first.row_id if first else None,
        problem=first.problem if first else None,
        checkpoint=cp,
        recon_run=run["key"] if run else None,
        recon_date=run["as_of"] if run else None,
        recon_row=recon.id if recon is not None else None,
        recon_clean=run["clean"] if run else None,
        live_from=start if head else None,
        own_rows=tuple(wanted),
        unverified_below=start if recon is None and start > 1 else None,
    )


def _recon_verdict(conn: Any, recon: Any) -> dict[str, Any]:
    """The latest reconciliation run's verdict on the chain: from its audit row (verified with the rows after it)
    and, when it found breaks, the rows they name."""
    from writeoffs.db.schema import recon_breaks

    try:
        details = json.loads(recon.details or "{}")
    except ValueError:
        details = {}
    by_check = details.get("breaks_by_check") or {}
    out: dict[str, Any] = {"key": str(details.get("run_key")), "as_of": str(details.get("as_of")), "findings": []}
    if "audit_chain" not in by_check:  # the run did not check the chain: it vouches for nothing
        out["clean"] = False
        out["findings"] = [AuditFinding(0, f"reconciliation run {out['key']} did not verify the audit chain")]
        return out
    out["clean"] = not by_check["audit_chain"]
    if not out["clean"]:
        for b in conn.execute(
            select(recon_breaks.c.message, recon_breaks.c.documents).where(
                recon_breaks.c.run_id == int(recon.object_id), recon_breaks.c.check_name == "audit_chain"
            )
        ):
            try:
                docs = json.loads(b.documents or "[]")
            except ValueError:
                docs = []
            for d in docs or [{"row_id": 0, "problem": b.message}]:
                out["findings"].append(
                    AuditFinding(int(d.get("row_id") or 0), f"{d.get('problem')} (reconciliation run {out['key']})")
                )
        if not out["findings"]:
            out["findings"] = [AuditFinding(0, f"reconciliation run {out['key']} found the audit chain broken")]
    return out


def _walk_from(key: bytes, rows: Sequence[Any], start: int) -> list[AuditFinding]:
    """Walk ``rows`` (ids from ``start``): the first row is taken as given (row 1 from GENESIS)."""
    if not rows:
        return []
    if start == 1:
        return [f for f in audit.walk(key, rows) if isinstance(f, AuditFinding)]
    first = rows[0]
    found = [] if int(first[0]) == start else [AuditFinding(start, f"row {start} is missing")]
    walked = audit.walk(key, rows[1:], prev=str(first[-1]), expected_id=start + 1)
    return found + [f for f in walked if isinstance(f, AuditFinding)]


def _check_one(key: bytes, row_id: int, by_id: dict[int, Any]) -> list[AuditFinding]:
    """Row ``row_id``'s MAC, its link to the row before and the next row's link to it."""
    row = by_id.get(row_id)
    if row is None:
        return [AuditFinding(row_id, "row is missing (deleted?)")]
    before = by_id.get(row_id - 1)
    prev = audit.GENESIS if row_id == 1 else (str(before[-1]) if before is not None else None)
    if prev is None:
        return [AuditFinding(row_id - 1, "row is missing (deleted?)")]
    chunk = [row] + ([by_id[row_id + 1]] if row_id + 1 in by_id else [])
    return [f for f in audit.walk(key, chunk, prev=prev, expected_id=row_id) if isinstance(f, AuditFinding)]
