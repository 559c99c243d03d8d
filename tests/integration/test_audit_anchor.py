"""Issue 14: the audit chain is keyed (HMAC, the key outside the ledger) and anchored (its head checkpointed outside
the ledger after each write batch), so that an insider who can write to the ledger database but holds neither the
key nor the checkpoint file cannot rewrite, renumber or cut off audit rows unnoticed.

Each attack first gets around the append-only triggers (as a superuser or the file's owner can), then does what the
unkeyed chain could not catch; ``verify_anchored`` (and reconciliation, which runs it every time) must report it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select, text

from tests.conftest import AS_OF, ROOT, ledger_url_of
from writeoffs import audit, audit_anchor, reconcile
from writeoffs.audit_anchor import AuditKeyInvalid, CheckpointStore
from writeoffs.db.engine import make_engine
from writeoffs.db.schema import audit_log

ATTACKER_KEY = b"m" * 32


def fill(engine: Engine, n: int = 5, first: int = 1) -> None:
    """``n`` audit rows, one transaction each (one checkpoint each, as after a write batch)."""
    for i in range(first, first + n):
        with engine.begin() as conn:
            audit.append(conn, actor=f"user{i}", action="test.event", object_type="thing", object_id=i, details={})


def store(engine: Engine) -> CheckpointStore:
    return audit_anchor.bound(engine)[1]


def disable_guard(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER trg_audit_no_update")
        conn.exec_driver_sql("DROP TRIGGER trg_audit_no_delete")
    else:
        conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER trg_audit_guard")


def rechain(conn: Connection, key: bytes) -> None:
    """What an insider does after editing: recompute every link and MAC, with the only key they have (not ours)."""
    prev = audit.GENESIS
    for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).all():
        mac = audit.row_mac(key, prev, r.id, r.recorded_at, r.actor, r.action, r.object_type, r.object_id, r.details)
        conn.execute(
            text("UPDATE audit_log SET prev_hash = :p, row_hash = :h WHERE id = :id"), {"p": prev, "h": mac, "id": r.id}
        )
        prev = mac


def problems(engine: Engine) -> str:
    return " | ".join(f"{f.row_id}: {f.problem}" for f in audit_anchor.verify_anchored(engine))


# --- the key --------------------------------------------------------------------------------------------------------


def test_without_a_key_audit_append_and_verify_refuse(ledger: Engine, monkeypatch: pytest.MonkeyPatch):
    fill(ledger, 2)
    monkeypatch.delenv("WRITEOFFS_AUDIT_KEY")
    keyless = make_engine(ledger_url_of(ledger))
    try:
        with pytest.raises(audit.AuditKeyMissing, match=r"^audit: no audit key configured: set [^\n]+$"):
            with keyless.begin() as conn:
                audit.append(conn, actor="mallory", action="forged", object_type="thing")
        with pytest.raises(audit.AuditKeyMissing), keyless.connect() as conn:
            audit.verify(conn)
        with pytest.raises(audit.AuditKeyMissing):
            audit_anchor.verify_anchored(keyless)
        # Reconciliation does not skip: the check that cannot run is a break (and the run cannot be stored).
        with keyless.connect() as conn:
            (outcome,) = reconcile.run_checks(conn, AS_OF, reconcile.Tolerances(), _chain_check())
        assert [b.check for b in outcome.breaks] == ["audit_chain"]
        assert "AuditKeyMissing" in outcome.breaks[0].message
        with pytest.raises(audit.AuditKeyMissing):
            reconcile.reconcile(keyless, AS_OF, run_key="nokey", write_report=False)
    finally:
        keyless.dispose()
    with ledger.connect() as conn:
        assert audit.count(conn) == 2


def _chain_check() -> tuple[reconcile.Check, ...]:
    return tuple(c for c in reconcile.CHECKS if c.name == "audit_chain")


def test_key_file_must_be_private_and_long_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "audit.key"
    assert audit_anchor.ensure_key_file(path) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert audit_anchor.ensure_key_file(path) is False and path.read_text().strip() == key  # kept, never rotated
    monkeypatch.delenv("WRITEOFFS_AUDIT_KEY")
    monkeypatch.setenv("WRITEOFFS_AUDIT_KEY_FILE", str(path))
    assert audit_anchor.key_from_env() == bytes.fromhex(key)
    path.chmod(0o644)
    with pytest.raises(AuditKeyInvalid, match="readable by others"):
        audit_anchor.key_from_env()
    path.chmod(0o600)
    path.write_text("ab" * 16)
    with pytest.raises(AuditKeyInvalid, match="16 bytes; at least 32"):
        audit_anchor.key_from_env()
    monkeypatch.delenv("WRITEOFFS_AUDIT_KEY_FILE")
    monkeypatch.setenv("WRITEOFFS_AUDIT_KEY", "not hex")
    with pytest.raises(AuditKeyInvalid, match="not hex"):
        audit_anchor.key_from_env()


# --- checkpoints ------------------------------------------------------------------------------------------------------


def test_each_committed_batch_is_checkpointed_and_a_rolled_back_one_is_not(ledger: Engine):
    fill(ledger, 3)
    st = store(ledger)
    key = audit_anchor.bound(ledger)[0]
    with ledger.connect() as conn:
        head3 = audit.head(conn)
    assert st.last(key) is not None and (st.last(key).seq, st.last(key).mac) == (3, head3)  # type: ignore[union-attr]
    assert stat.S_IMODE(st.path.stat().st_mode) == 0o600
    lines = st.path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]

    with pytest.raises(RuntimeError), ledger.begin() as conn:
        audit.append(conn, actor="x", action="test.event", object_type="thing")
        raise RuntimeError("the batch fails after auditing")
    assert st.last(key).seq == 3  # type: ignore[union-attr]
    assert audit_anchor.verify_anchored(ledger) == []

    fill(ledger, 1, first=4)
    assert st.last(key).seq == 4  # type: ignore[union-attr]
    assert audit_anchor.verify_anchored(ledger) == []


def test_a_missing_checkpoint_is_a_finding_and_a_break(ledger: Engine):
    fill(ledger, 3)
    store(ledger).path.unlink()
    assert "no checkpoint of the audit chain" in problems(ledger)
    result = reconcile.reconcile(ledger, AS_OF, run_key="nocp", checks=_chain_check(), write_report=False)
    assert len(result.breaks) == 1 and "not anchored" in result.breaks[0].message


def test_a_checkpoint_line_written_without_the_key_is_a_finding(ledger: Engine):
    fill(ledger, 3)
    st = store(ledger)
    # An insider moves the anchor back to row 2 after deleting row 3, tagging the line with a key of their own.
    with ledger.connect() as conn:
        mac2 = conn.execute(select(audit_log.c.row_hash).where(audit_log.c.id == 2)).scalar_one()
    tag = hmac.new(ATTACKER_KEY, f"writeoffs-audit-checkpoint\x1f2\x1f{mac2}\x1fnow".encode(), hashlib.sha256)
    with st.path.open("a") as fh:
        fh.write(json.dumps({"seq": 2, "mac": mac2, "at": "now", "tag": tag.hexdigest()}) + "\n")
    assert "not written with the audit key" in problems(ledger)


# --- attacks on the chain ---------------------------------------------------------------------------------------------


def test_tail_truncated(ledger: Engine):
    fill(ledger)
    with ledger.begin() as conn:
        disable_guard(conn)
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id > 3")
    with ledger.connect() as conn:
        assert audit.verify(conn) == []  # what is left is a valid chain
    found = problems(ledger)
    assert "tail truncated: the newest audit row is 3" in found and "anchors row 5" in found


def test_tail_truncated_then_refilled_by_the_application(ledger: Engine, caplog: pytest.LogCaptureFixture):
    """Rows 4-5 cut off, then two new ones appended by the application: the head is back at 5, but not the same 5."""
    fill(ledger)
    with ledger.begin() as conn:
        disable_guard(conn)
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id > 3")
    fill(ledger, 2, first=6)
    assert "does not extend its checkpoint" in caplog.text  # the broken chain was not anchored
    assert "row 5 differs from the checkpoint" in problems(ledger)


def test_chain_rewritten_and_recomputed_without_our_key(ledger: Engine):
    fill(ledger)
    with ledger.begin() as conn:
        disable_guard(conn)
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
        rechain(conn, ATTACKER_KEY)
    with ledger.connect() as conn:
        findings = audit.verify(conn)
    assert {f.row_id for f in findings if "MAC" in f.problem} == {1, 2, 3, 4, 5}
    assert "row 5 differs from the checkpoint" in problems(ledger)


def test_renumbered_after_a_delete(ledger: Engine):
    fill(ledger)
    with ledger.begin() as conn:
        disable_guard(conn)
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id = 3")
        for old in (4, 5):
            conn.execute(text("UPDATE audit_log SET id = :new WHERE id = :old"), {"new": old - 1, "old": old})
        rechain(conn, ATTACKER_KEY)
    with ledger.connect() as conn:
        assert [r for (r,) in conn.execute(select(audit_log.c.id).order_by(audit_log.c.id))] == [1, 2, 3, 4]
    found = problems(ledger)
    assert "row MAC does not match" in found and "tail truncated: the newest audit row is 4" in found


def test_reconciliation_reports_a_truncated_chain(ledger: Engine):
    fill(ledger)
    clean = reconcile.reconcile(ledger, AS_OF, run_key="before", checks=_chain_check(), write_report=False)
    assert clean.breaks == []
    with ledger.begin() as conn:
        disable_guard(conn)
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id > 4")  # the recon run's own row (6) and row 5
    result = reconcile.reconcile(ledger, AS_OF, run_key="after", checks=_chain_check(), write_report=False)
    assert [b.check for b in result.breaks] == ["audit_chain"]
    assert "tail truncated" in result.breaks[0].message


# --- CLI --------------------------------------------------------------------------------------------------------------


def test_cli_creates_a_private_key_file_and_verifies_the_chain(ledger: Engine, tmp_path: Path):
    key_file = tmp_path / "keys" / "audit.key"
    env = {k: v for k, v in os.environ.items() if k != "WRITEOFFS_AUDIT_KEY"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), str(ROOT)])
    made = subprocess.run(
        [sys.executable, "-m", "writeoffs", "audit-key", "--file", str(key_file)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert key_file.read_text().strip() not in made.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    fill(ledger, 2)
    env |= {"WRITEOFFS_AUDIT_KEY": os.environ["WRITEOFFS_AUDIT_KEY"], "WRITEOFFS_LEDGER_URL": ledger_url_of(ledger)}
    ok = subprocess.run([sys.executable, "-m", "writeoffs", "audit-verify"], env=env, cwd=ROOT, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    store(ledger).path.unlink()
    bad = subprocess.run(
        [sys.executable, "-m", "writeoffs", "audit-verify"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "no checkpoint" in bad.stdout


def test_the_embedded_demo_makes_its_own_private_audit_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`python -m writeoffs demo` with no key configured: a random key in a mode-0600 file beside the ledger; the
    ledger's audit chain verifies under it and is anchored."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRITEOFFS_")}
    env |= {"WRITEOFFS_DATA_DIR": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "writeoffs", "demo", "--invoices", "300"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    key_file = tmp_path / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in done.stdout + done.stderr
    assert "audit log:" in done.stdout and "chain intact" in done.stdout
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path))  # where the demo checkpointed
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}", audit_key=bytes.fromhex(key_file.read_text()))
    try:
        with engine.connect() as conn:
            assert audit.count(conn) > 0
        assert audit_anchor.verify_anchored(engine) == []
    finally:
        engine.dispose()


# --- the status the invoice trail page shows (issue 18) ---------------------------------------------------------


def _reconcile_chain(engine: Engine, run_key: str) -> int:
    chain_only = [c for c in reconcile.CHECKS if c.name == "audit_chain"]
    return reconcile.reconcile(engine, AS_OF, run_key=run_key, checks=chain_only, write_report=False).break_count


def test_chain_status_reuses_the_latest_run_and_verifies_what_came_after(ledger: Engine, monkeypatch):
    fill(ledger, 4)
    assert _reconcile_chain(ledger, "r1") == 0  # its audit row is row 5
    fill(ledger, 3, first=6)  # rows 6-8, after the run
    status = audit_anchor.chain_status(ledger, [2])
    assert (status.intact, status.head, status.live_from, status.recon_run) == (True, 8, 4, "r1")
    assert status.headline().startswith("audit chain intact up to row 8, anchored at row 8")
    # An edit after the run, of a row nobody asked about: verified now, so seen now.
    with ledger.begin() as conn:
        disable_guard(conn)
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE id = 7")
    status = audit_anchor.chain_status(ledger)
    assert (status.intact, status.broken_at) == (False, 7) and "MAC" in (status.problem or "")
    # An edit before the run, of a row not asked about: the page relies on reconciliation, which sees it next time.
    with ledger.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'user7' WHERE id = 7")  # put back (MAC matches again)
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE id = 1")
    assert audit_anchor.chain_status(ledger).intact is True
    assert audit_anchor.chain_status(ledger, [1]).broken_at == 1  # ... unless it is one of the invoice's rows
    assert _reconcile_chain(ledger, "r2") == 1
    status = audit_anchor.chain_status(ledger)
    assert (status.intact, status.broken_at, status.recon_run) == (False, 1, "r2")
    # No key in this process: not verified, never "intact".
    keyless = audit_anchor.bind(make_engine(ledger_url_of(ledger), audit_key=b""), key=None, checkpoint=None)
    monkeypatch.delenv("WRITEOFFS_AUDIT_KEY", raising=False)
    assert audit_anchor.chain_status(keyless).intact is None


def test_two_ledgers_in_one_database_keep_separate_checkpoints_and_one_ledger_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found with two benchmark ledgers in one PostgreSQL database: make_engine(url, schema=...) named the checkpoint
    # file after the database alone, so each ledger's checkpoint looked forged to the other ("not written with the
    # audit key") and neither advanced.
    from writeoffs.db.engine import schema_url

    monkeypatch.delenv(audit_anchor.CHECKPOINT_ENV, raising=False)
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path))
    url = "postgresql+psycopg://app@127.0.0.1:5432/test"
    key = b"k" * 32

    def path_of(engine: Engine) -> str:
        return engine.get_execution_options()[audit_anchor.CHECKPOINT_OPTION]

    a, b = make_engine(url, schema="ledger_a", audit_key=key), make_engine(url, schema="ledger_b", audit_key=key)
    same_a = make_engine(schema_url(url, "ledger_a"), audit_key=key)
    try:
        assert path_of(a) != path_of(b)
        assert path_of(a) == path_of(same_a)  # the same ledger by keyword or by URL: one file
    finally:
        for e in (a, b, same_a):
            e.dispose()
