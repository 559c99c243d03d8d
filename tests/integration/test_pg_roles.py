"""Issue 14: the runtime role the DAGs connect as cannot change the rules or rewrite the books (PostgreSQL).

Each attack is run *as the runtime role* (``writeoffs.db.roles``) on a migrated ledger holding a posted write-off
and audit rows, and must be refused by the database. Connected as the owner (what the application did before), every
one of them succeeds, which is how these tests were written first. The normal path still works as the runtime role:
approving and posting a batch, and a clean reconciliation.

Roles are cluster-global: each test makes its own (``wo_rt_<uuid>``) and drops it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from tests import factories as f
from tests.conftest import AS_OF, PG_URL
from tests.integration.posting_support import TIERS, approve, make_batch
from writeoffs import audit, audit_anchor, reconcile, subledger
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.roles import grant_runtime
from writeoffs.db.schema import journal_entries, journal_lines
from writeoffs.posting import post_batch

pytestmark = pytest.mark.postgres

D = Decimal


def _schema_of(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT current_schema()")).scalar_one())


@pytest.fixture
def runtime(pg_ledger: Engine, pg_admin: Engine) -> Iterator[Engine]:
    """An engine on ``pg_ledger`` connected as a fresh runtime role (granted by the owner, as ``db-roles`` does)."""
    role = f"wo_rt_{uuid.uuid4().hex[:12]}"
    with pg_ledger.begin() as conn:
        grant_runtime(conn, role, create=True)
    schema = _schema_of(pg_ledger)
    url = schema_url(PG_URL.replace("://postgres@", f"://{role}@", 1), schema)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with pg_admin.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def _post_one(owner: Engine, runtime: Engine) -> int:
    """Reference data by the owner (a bootstrap step); the batch is approved and posted as the runtime role."""
    with owner.begin() as conn:
        ids = f.worked_example(conn)
    with runtime.begin() as conn:
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(runtime, batch)
    report = post_batch(runtime, batch, actor="airflow:writeoff_posting", tiers=TIERS, posting_date=AS_OF)
    assert (report.posted, report.status) == (1, "posted")
    return batch


def test_the_runtime_role_approves_posts_and_reconciles(pg_ledger: Engine, runtime: Engine, tmp_path) -> None:
    batch = _post_one(pg_ledger, runtime)
    with runtime.begin() as conn:  # what the ingest's aging step does (it locks invoices while it builds)
        checkpoint = subledger.build_checkpoint(conn, AS_OF)
    with runtime.connect() as conn:
        assert subledger.checkpoints(conn) == [checkpoint]
    with runtime.connect() as conn:
        entry = conn.execute(select(journal_entries).where(journal_entries.c.batch_id == batch)).one()
        assert entry.status == "posted"
        assert conn.execute(
            select(journal_lines.c.account_code, journal_lines.c.debit).where(journal_lines.c.entry_id == entry.id)
        ).all() == [("6100", D("45000.0000")), ("1100", D("0.0000"))]
    assert audit_anchor.verify_anchored(runtime) == []
    # The factories raise invoices in the sub-ledger only (no GL entry), so only the audit chain is expected clean.
    result = reconcile.reconcile(runtime, AS_OF, run_key="rt", report_dir=tmp_path)
    assert result.run_id and result.summary()["breaks_by_check"]["audit_chain"] == 0


#: name -> SQL an insider with the runtime role's login would try. Every one must be refused.
ATTACKS: dict[str, str] = {
    "disable the posted-line guard": "ALTER TABLE journal_lines DISABLE TRIGGER trg_jl_guard",
    "disable every trigger on the audit log": "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "drop the audit guard": "DROP TRIGGER trg_audit_guard ON audit_log",
    "replace the period guard function": (
        "CREATE OR REPLACE FUNCTION ledger_fp_guard() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RETURN COALESCE(NEW, OLD); END $$"
    ),
    "edit a posted line": "UPDATE journal_lines SET account_code = '1100' WHERE entry_id = 1 AND line_no = 1",
    "delete a posted line": "DELETE FROM journal_lines WHERE entry_id = 1",
    "edit an audit row": "UPDATE audit_log SET actor = 'mallory' WHERE id = 1",
    "delete audit rows": "DELETE FROM audit_log WHERE id > 1",
    "truncate the audit log": "TRUNCATE audit_log",
    "truncate the journal": "TRUNCATE journal_entries, journal_lines",
    "truncate the invoices": "TRUNCATE invoices CASCADE",
    "re-describe a posted entry": "UPDATE journal_entries SET description = 'nothing to see' WHERE id = 1",
    "un-post an entry": "UPDATE journal_entries SET status = 'pending' WHERE id = 1",
    "delete an entry": "DELETE FROM journal_entries WHERE id = 1",
    "re-open a closed period": "UPDATE fiscal_periods SET status = 'open' WHERE status = 'closed'",
    "move a period's dates": "UPDATE fiscal_periods SET end_date = end_date WHERE period = '2026-11'",
    "drop a table": "DROP TABLE recon_breaks",
    "add a table": "CREATE TABLE backdoor (x int)",
    "add a column": "ALTER TABLE audit_log ADD COLUMN note text",
    "rewrite the migration record": "UPDATE alembic_version SET version_num = '0001'",
    # issue 19: the sub-ledger's history
    "edit a movement": "UPDATE invoice_movements SET balance_change = 0",
    "delete movements": "DELETE FROM invoice_movements",
    "truncate the movements": "TRUNCATE invoice_movements",
    "stop recording movements": "ALTER TABLE invoices DISABLE TRIGGER trg_invoices_moved_update",
    "replace the movement trigger function": (
        "CREATE OR REPLACE FUNCTION ledger_invoice_moved() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RETURN NULL; END $$"
    ),
    # issue 19: the balance checkpoints derived from the movements (built by the runtime role, never changed)
    "edit a checkpoint balance": "UPDATE balance_checkpoint_rows SET balance = 0",
    "move a checkpoint's high-water mark": "UPDATE balance_checkpoints SET movements_through = movements_through + 9",
    "delete a checkpoint": "DELETE FROM balance_checkpoint_rows",
    "truncate the checkpoints": "TRUNCATE balance_checkpoints, balance_checkpoint_rows",
    "edit a checkpoint's copied due date": "UPDATE balance_checkpoint_rows SET due_date = invoice_date",
    "edit a checkpoint's summary": "UPDATE balance_checkpoint_summary SET balance = 0",
    # issue 19: the record of attribute changes that tells a checkpoint's copies from stale ones (migration 0017)
    "delete attribute changes": "DELETE FROM invoice_attribute_changes",
    "truncate attribute changes": "TRUNCATE invoice_attribute_changes",
    "stop recording attribute changes": (
        "CREATE OR REPLACE FUNCTION ledger_attribute_changes_guard() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RETURN NULL; END $$"
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_refused_to_the_runtime_role(pg_ledger: Engine, runtime: Engine, attack: str) -> None:
    _post_one(pg_ledger, runtime)
    with pg_ledger.begin() as conn:
        conn.exec_driver_sql("UPDATE fiscal_periods SET status = 'closed' WHERE period = '2026-10'")
    with runtime.begin() as conn:
        subledger.build_checkpoint(conn, AS_OF)
    with runtime.connect() as conn:
        before = _fingerprint(conn)
    with pytest.raises(DBAPIError) as refused, runtime.begin() as conn:
        conn.exec_driver_sql(ATTACKS[attack])
    message = str(refused.value.orig)
    assert "permission denied" in message or "must be owner" in message or "ledger:" in message, message
    with runtime.connect() as conn:
        assert _fingerprint(conn) == before
    assert audit_anchor.verify_anchored(runtime) == []


def _fingerprint(conn) -> tuple:
    return (
        conn.execute(text("SELECT * FROM journal_entries ORDER BY id")).all(),
        conn.execute(text("SELECT * FROM journal_lines ORDER BY id")).all(),
        conn.execute(text("SELECT * FROM audit_log ORDER BY id")).all(),
        conn.execute(text("SELECT * FROM fiscal_periods ORDER BY entity_code, period")).all(),
        conn.execute(text("SELECT count(*) FROM invoices")).scalar_one(),
        conn.execute(text("SELECT * FROM invoice_movements ORDER BY id")).all(),
        conn.execute(text("SELECT * FROM balance_checkpoints ORDER BY id")).all(),
        conn.execute(text("SELECT * FROM balance_checkpoint_rows ORDER BY checkpoint_id, invoice_id")).all(),
        conn.execute(
            text(
                "SELECT tgname, tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1"
            )
        ).all(),
        conn.execute(
            text(
                "SELECT proname, md5(prosrc) FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
                " ORDER BY proname"
            )
        ).all(),
    )


def test_the_runtime_role_writes_audit_rows_only_through_the_chain(runtime: Engine) -> None:
    """It may insert audit rows (the application does), but without the key a forged one breaks the chain."""
    with runtime.begin() as conn:
        audit.append(conn, actor="ar_clerk", action="test.event", object_type="thing", object_id=1)
        conn.execute(
            text(
                "INSERT INTO audit_log (id, recorded_at, actor, action, object_type, object_id, details, prev_hash,"
                " row_hash) SELECT 2, recorded_at, 'cfo', 'batch.approve', 'writeoff_batch', '7', '{}', row_hash,"
                " md5('forged') || md5('x') FROM audit_log WHERE id = 1"
            )
        )
    assert any("MAC" in x.problem for x in audit_anchor.verify_anchored(runtime))


def test_a_temporary_table_cannot_stand_in_for_a_ledger_table_in_the_guards(pg_ledger: Engine, runtime: Engine) -> None:
    """The runtime role may create temporary tables (the policy engine does), and ``pg_temp`` comes first in the
    search path of relations: unless the guard functions pin theirs (migration 0011), a temporary
    ``fiscal_periods`` in which every month is open lets an entry be posted into a closed month."""
    _post_one(pg_ledger, runtime)
    schema = _schema_of(pg_ledger)
    with pg_ledger.begin() as conn:
        conn.exec_driver_sql("UPDATE fiscal_periods SET status = 'closed' WHERE period = '2026-10'")
    with pytest.raises(DBAPIError, match="ledger: fiscal period 2026-10 is closed"), runtime.begin() as conn:
        conn.exec_driver_sql(f'CREATE TEMP TABLE fiscal_periods AS SELECT * FROM "{schema}".fiscal_periods')
        conn.exec_driver_sql("UPDATE pg_temp.fiscal_periods SET status = 'open'")
        conn.exec_driver_sql(
            f"""INSERT INTO "{schema}".journal_entries (id, idempotency_key, entity_code, posting_date, period,
                status, source_type) VALUES (99, 'backdated', 'US01', '2026-10-15', '2026-10', 'pending', 'manual')"""
        )
        for line_no, account, dr, cr in ((1, "6100", 375000, 0), (2, "1100", 0, 375000)):
            conn.exec_driver_sql(
                f"""INSERT INTO "{schema}".journal_lines (entry_id, line_no, entity_code, account_code, currency,
                    debit, credit, functional_currency, functional_debit, functional_credit)
                    VALUES (99, {line_no}, 'US01', '{account}', 'USD', {dr}, {cr}, 'USD', {dr}, {cr})"""
            )
        conn.exec_driver_sql(f"""UPDATE "{schema}".journal_entries SET status = 'posted' WHERE id = 99""")
    with pg_ledger.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM journal_entries WHERE id = 99")).scalar_one() == 0


def test_every_ledger_function_pins_its_search_path(pg_ledger: Engine) -> None:
    with pg_ledger.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        configs = dict(
            conn.execute(
                text("SELECT proname, proconfig FROM pg_proc WHERE pronamespace = current_schema()::regnamespace")
            ).all()
        )
    assert configs and all(name.startswith("ledger_") for name in configs), configs
    assert {name: cfg for name, cfg in configs.items() if cfg != [f"search_path={schema}, pg_temp"]} == {}
