"""Named errors: callers tell them apart by class, and input errors say where the bad value is."""

from __future__ import annotations

import pytest

from writeoffs import errors as e


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"source": "erp-eu", "file": "ar_aging_2026-11-24.csv", "row": 17, "field": "amount"},
            "source erp-eu, file ar_aging_2026-11-24.csv, row 17, field amount: not a number",
        ),
        ({"file": "ar.csv", "row": 3}, "file ar.csv, row 3: not a number"),
        ({"field": "currency"}, "field currency: not a number"),
        ({"row": 0}, "row 0: not a number"),  # row 0 is a location (a header row), not "no location"
        ({}, "not a number"),
    ],
)
def test_input_error_message_names_source_file_row_field(kwargs, expected):
    err = e.InputError("not a number", **kwargs)
    assert str(err) == expected
    assert err.reason == "not a number"
    for name in ("source", "file", "row", "field"):
        assert getattr(err, name) == kwargs.get(name)


@pytest.mark.parametrize("cls", [e.InvalidAmount, e.UnknownCurrency])
def test_input_error_subclasses_keep_the_location(cls):
    err = cls("bad", source="s", file="f.csv", row=2, field="amount")
    assert str(err) == "source s, file f.csv, row 2, field amount: bad"
    assert (err.file, err.row) == ("f.csv", 2)


@pytest.mark.parametrize(
    ("cls", "parents"),
    [
        (e.ConfigError, (e.WriteoffError,)),
        (e.InputError, (e.WriteoffError,)),
        (e.UnknownCurrency, (e.InputError, e.WriteoffError)),
        (e.InvalidAmount, (e.InputError, e.WriteoffError)),
        (e.LedgerError, (e.WriteoffError,)),
        (e.UnbalancedEntry, (e.LedgerError, e.WriteoffError)),
        (e.PostedEntryImmutable, (e.LedgerError, e.WriteoffError)),
        (e.ClosedPeriod, (e.LedgerError, e.WriteoffError)),
        (e.AmountExceedsBalance, (e.LedgerError, e.WriteoffError)),
        (e.ApprovalError, (e.WriteoffError,)),
        (e.SegregationOfDuties, (e.ApprovalError, e.WriteoffError)),
        (e.AuditChainBroken, (e.WriteoffError,)),
    ],
)
def test_error_hierarchy(cls, parents):
    for parent in parents:
        assert issubclass(cls, parent)
    assert issubclass(e.WriteoffError, Exception)


@pytest.mark.parametrize(
    ("cls", "not_a"),
    [
        (e.ClosedPeriod, e.InputError),  # a closed period is not a data problem to quarantine
        (e.UnbalancedEntry, e.InputError),
        (e.InvalidAmount, e.LedgerError),
        (e.SegregationOfDuties, e.LedgerError),
        (e.AuditChainBroken, e.LedgerError),
    ],
)
def test_errors_are_distinguishable(cls, not_a):
    assert not issubclass(cls, not_a)


def test_every_public_error_derives_from_the_package_base():
    public = [v for k, v in vars(e).items() if isinstance(v, type) and issubclass(v, Exception) and k[0].isupper()]
    assert len(public) >= 13
    assert all(issubclass(cls, e.WriteoffError) for cls in public)
