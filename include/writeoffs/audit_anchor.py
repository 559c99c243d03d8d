"""What anchors the audit chain outside the ledger database: the MAC key, and the checkpoints of the chain head.

**Key.** At least 32 random bytes, written as hex. The domain takes it as a parameter (``make_engine(...,
audit_key=...)``); when none is given it comes from ``WRITEOFFS_AUDIT_KEY_FILE`` (a file readable by its owner only:
a group- or world-readable file is refused) or ``WRITEOFFS_AUDIT_KEY``. In Airflow the glue
(``writeoffs_airflow.ledger``) reads the connection ``writeoff_audit_key`` (its password) from the secrets backend
first. ``make demo`` and ``make up`` generate a random key file (mode 0600) with ``python -m writeoffs audit-key``;
compose takes ``WRITEOFFS_AUDIT_KEY`` from the generated ``.env``. No key: audit appends and verification refuse.

**Checkpoints.** A JSON-lines file per ledger (``WRITEOFFS_AUDIT_CHECKPOINT``, default
``$WRITEOFFS_DATA_DIR/audit-checkpoints/<ledger id>.jsonl``, mode 0600): one line ``{"seq", "mac", "at", "tag"}``
per write batch, ``tag`` being an HMAC of the line under the audit key (a line written without the key is refused).
Lines are only ever appended (``O_APPEND``, one ``write``, ``fsync``), under an exclusive lock.

A checkpoint is taken when a connection that appended audit rows goes back to the pool, i.e. once its transaction
committed or rolled back: the hook reads the *committed* head, walks the rows from the last checkpoint to it with
the key, and appends the new head only if the chain still extends the last checkpoint. A broken chain is never
anchored (the refusal is logged; :func:`verify_anchored`, run by reconciliation, reports the break). Cost: per
transaction that audited, one indexed range read of the rows since the last checkpoint and one appended line.

The file and the database are separate trust domains: keep the checkpoint directory where the database's
administrators cannot write (another volume, host or a write-once store).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import URL, make_url

from writeoffs import audit
from writeoffs.audit import AuditFinding, Checkpoint
from writeoffs.db.schema import audit_log
from writeoffs.errors import WriteoffError
from writeoffs.private_files import PRIVATE_MODE, write_private

log = logging.getLogger(__name__)

KEY_ENV = "WRITEOFFS_AUDIT_KEY"
KEY_FILE_ENV = "WRITEOFFS_AUDIT_KEY_FILE"
CHECKPOINT_ENV = "WRITEOFFS_AUDIT_CHECKPOINT"
#: Engine execution option naming the checkpoint file of the engine's ledger.
CHECKPOINT_OPTION = "writeoffs_audit_checkpoint"
MIN_KEY_BYTES = 32


class AuditKeyInvalid(WriteoffError):
    """A configured audit key cannot be used (not hex, too short, or its file is readable by others)."""


class CheckpointInvalid(WriteoffError):
    """The checkpoint file's newest line is unreadable or was not written with the audit key."""


class AnchorRefused(WriteoffError):
    """The chain in the ledger does not extend the last checkpoint: it is not anchored."""


# --- the key ------------------------------------------------------------------------------------------------------


def parse_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise AuditKeyInvalid(f"audit key from {source} is not hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyInvalid(f"audit key from {source} has {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return key


def key_from_env() -> bytes | None:
    """The key from ``WRITEOFFS_AUDIT_KEY_FILE`` or ``WRITEOFFS_AUDIT_KEY``; None when neither is set."""
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        file = Path(path)
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except OSError as exc:
            raise AuditKeyInvalid(f"audit key file {file} cannot be read: {exc.strerror}") from None
        if mode & 0o077:
            raise AuditKeyInvalid(f"audit key file {file} is readable by others (mode {mode:04o}): chmod 600 it")
        return parse_key(file.read_text(encoding="ascii"), str(file))
    value = os.environ.get(KEY_ENV)
    return parse_key(value, KEY_ENV) if value else None


def ensure_key_file(path: Path) -> bool:
    """Write a new random key to ``path`` (mode 0600) unless the file exists; True when one was written."""
    if path.exists():
        return False
    write_private(path, secrets.token_hex(MIN_KEY_BYTES) + "\n")
    return True


# --- the checkpoint store -----------------------------------------------------------------------------------------


def checkpoint_path(url: object) -> Path:
    """``WRITEOFFS_AUDIT_CHECKPOINT``, else one file per ledger URL under ``$WRITEOFFS_DATA_DIR``."""
    explicit = os.environ.get(CHECKPOINT_ENV)
    if explicit:
        return Path(explicit)
    # The ledger, not who connects to it: the owner and the runtime role share one checkpoint file.
    full = url if isinstance(url, URL) else make_url(str(url))
    shown = full.set(username=None, password=None).render_as_string(hide_password=True)
    ledger_id = hashlib.sha256(shown.encode("utf-8")).hexdigest()[:16]
    base = Path(os.environ.get("WRITEOFFS_DATA_DIR", ".data")).resolve()
    return base / "audit-checkpoints" / f"{ledger_id}.jsonl"


def _tag(key: bytes, seq: int, mac: str, at: str) -> str:
    payload = "\x1f".join(["writeoffs-audit-checkpoint", str(seq), mac, at])
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock (a sibling ``.lock`` file) across threads and processes of this host."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def last(self, key: bytes) -> Checkpoint | None:
        """The newest checkpoint, its tag checked; None when nothing was ever checkpointed."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        lines = raw.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            return None
        try:
            rec = json.loads(lines[-1])
            cp = Checkpoint(seq=int(rec["seq"]), mac=str(rec["mac"]), at=str(rec["at"]))
            tag = str(rec["tag"])
        except (ValueError, KeyError, TypeError):
            raise CheckpointInvalid(f"audit checkpoint file {self.path}: the newest line is unreadable") from None
        if not hmac.compare_digest(tag, _tag(key, cp.seq, cp.mac, cp.at)):
            raise CheckpointInvalid(
                f"audit checkpoint file {self.path}: the newest line was not written with the audit key (forged?)"
            )
        return cp

    def record(self, key: bytes, cp: Checkpoint) -> None:
        line = json.dumps({"seq": cp.seq, "mac": cp.mac, "at": cp.at, "tag": _tag(key, cp.seq, cp.mac, cp.at)})
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
        try:
            os.fchmod(fd, PRIVATE_MODE)
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


# --- advancing the checkpoint ---------------------------------------------------------------------------------------


def advance(dbapi_conn: Any, key: bytes, store: CheckpointStore) -> Checkpoint | None:
    """Checkpoint the committed chain head, read on a raw DBAPI connection (ends its transaction).

    Returns the (new or unchanged) last checkpoint; :class:`AnchorRefused` when the chain does not extend it.
    """
    with store.locked():
        cp = store.last(key)
        start = cp.seq if cp is not None else 1
        cur = dbapi_conn.cursor()
        try:
            # ``start`` is an int we computed: formatting it in keeps one statement for both drivers' paramstyles.
            cur.execute(f"SELECT {', '.join(audit.CHAIN_COLUMNS)} FROM audit_log WHERE id >= {int(start)} ORDER BY id")
            rows = cur.fetchall()
        finally:
            cur.close()
            dbapi_conn.rollback()
        prev, expected = audit.GENESIS, 1
        if cp is not None:
            if not rows or int(rows[0][0]) != cp.seq or not hmac.compare_digest(str(rows[0][-1]), cp.mac):
                raise AnchorRefused(
                    f"audit chain does not extend its checkpoint of {cp.at} (row {cp.seq}): not checkpointed"
                )
            prev, expected, rows = cp.mac, cp.seq + 1, rows[1:]
        newest: tuple[int, str] | None = None
        for item in audit.walk(key, rows, prev=prev, expected_id=expected):
            if isinstance(item, AuditFinding):
                raise AnchorRefused(f"audit chain broken at row {item.row_id}: {item.problem}; not checkpointed")
            newest = item
        if newest is None:
            return cp
        new = Checkpoint(seq=newest[0], mac=newest[1], at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        store.record(key, new)
        return new


def checkpoint_now(engine: Engine) -> Checkpoint | None:
    """Checkpoint ``engine``'s ledger now (the hook does this after each auditing transaction)."""
    key, store = bound(engine)
    raw = engine.raw_connection()
    try:
        return advance(raw, key, store)
    finally:
        raw.close()


def bind(engine: Engine, *, key: bytes | None, checkpoint: Path | None) -> Engine:
    """Give ``engine`` its audit key and checkpoint file, and checkpoint after every transaction that audited."""
    options: dict[str, object] = {}
    if key is not None:
        options[audit.KEY_OPTION] = key
    if checkpoint is not None:
        options[CHECKPOINT_OPTION] = str(checkpoint)
    if options:
        engine.update_execution_options(**options)
    if key is None or checkpoint is None:
        return engine
    store = CheckpointStore(checkpoint)

    def on_checkin(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is None or not record.info.pop(audit.APPENDED_FLAG, False):
            return
        try:
            advance(dbapi_conn, key, store)
        except Exception as exc:  # never break the pool; the unanchored chain is reported by verification
            log.error("audit checkpoint not advanced (%s): %s", store.path, (str(exc) or repr(exc)).splitlines()[0])

    event.listen(engine, "checkin", on_checkin)
    return engine


def bound(engine: Engine) -> tuple[bytes, CheckpointStore]:
    """The key and checkpoint store bound to ``engine`` (:class:`AuditKeyMissing` without a key)."""
    options = engine.get_execution_options()
    key = audit.require_key(options.get(audit.KEY_OPTION))
    path = options.get(CHECKPOINT_OPTION)
    return key, CheckpointStore(Path(path) if path else checkpoint_path(engine.url))


# --- verification against the checkpoint ----------------------------------------------------------------------------


def verify_anchored(engine: Engine) -> list[AuditFinding]:
    """Verify the whole chain with the key and against the last checkpoint; findings (empty: intact and anchored).

    The checkpoint is read before the database, so every row it names was committed before the read: a posting
    committing meanwhile cannot make the head look truncated. No checkpoint while the ledger has audit rows is a
    finding (fail closed), and so is a checkpoint line not written with the key.
    """
    key, store = bound(engine)
    findings: list[AuditFinding] = []
    cp: Checkpoint | None = None
    try:
        cp = store.last(key)
    except CheckpointInvalid as exc:
        findings.append(AuditFinding(0, str(exc)))
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
    findings: list[AuditFinding] = []
    cp: Checkpoint | None = None
    try:
        cp = store.last(key)
    except CheckpointInvalid as exc:
        findings.append(AuditFinding(0, str(exc)))
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


# --- CLI ------------------------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """``python -m writeoffs audit-key`` (create the key file) and ``audit-verify`` (exit 1 on findings)."""
    p = subparsers.add_parser("audit-key", help=f"create a random audit key file (mode 0600) at ${KEY_FILE_ENV}")
    p.add_argument("--file", type=Path, default=None, help=f"default: ${KEY_FILE_ENV}")
    p.set_defaults(func=_cmd_key)
    v = subparsers.add_parser("audit-verify", help="verify the audit chain with the key and against its checkpoint")
    v.set_defaults(func=_cmd_verify)


def _cmd_key(args: argparse.Namespace) -> int:
    path = args.file or (Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None)
    if path is None:
        raise AuditKeyInvalid(f"audit-key: give --file or set {KEY_FILE_ENV}")
    print(f"{path}: {'generated a new audit key (mode 0600)' if ensure_key_file(path) else 'exists, kept'}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from writeoffs.db.engine import open_ledger

    findings = verify_anchored(open_ledger(args.ledger_url))
    for f in findings:
        print(f"row {f.row_id}: {f.problem}")
    print("audit chain intact and anchored" if not findings else f"audit chain BROKEN: {len(findings)} finding(s)")
    return 1 if findings else 0
