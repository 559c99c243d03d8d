"""Reference tables: the chart of accounts, fiscal periods, policy versions."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from writeoffs.db.schema.base import (
    ACCOUNT_ROLES,
    ACCOUNT_TYPES,
    CODE,
    REF,
    _in,
    metadata,
)

accounts = Table(
    "accounts",
    metadata,
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), primary_key=True),
    Column("code", CODE, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("account_type", String(16), nullable=False),
    Column("role", String(24), nullable=True),  # the default account for a posting role
    CheckConstraint(_in("account_type", ACCOUNT_TYPES), name="type"),
    CheckConstraint(f"role IS NULL OR {_in('role', ACCOUNT_ROLES)}", name="role"),
    UniqueConstraint("entity_code", "role"),
)

fiscal_periods = Table(
    "fiscal_periods",
    metadata,
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), primary_key=True),
    Column("period", String(7), primary_key=True),  # YYYY-MM
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("status", String(8), nullable=False, server_default="open"),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("closed_by", REF, nullable=True),
    CheckConstraint(_in("status", ("open", "closed")), name="status"),
    CheckConstraint("end_date >= start_date", name="dates"),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("content_hash", String(64), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column(
        "loaded_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
)
