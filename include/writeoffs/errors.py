"""Named domain errors.

Every error a user can meet has a class here, so that DAGs, the CLI and tests can tell them apart and so that
messages name the document, row and field at fault instead of surfacing a stack trace.
"""

from __future__ import annotations

#: How much of a value taken from the input an error message may echo (a 10 MB field is never printed whole).
VALUE_LIMIT = 80
MESSAGE_LIMIT = 1000


def shorten(text: str, limit: int = VALUE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was; one line (line breaks shown escaped)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 20, 1)]}… ({len(text)} chars)"


def value_repr(value: object, limit: int = VALUE_LIMIT) -> str:
    """``repr`` of an input value for a message, cut to ``limit``."""
    return shorten(repr(value), limit)


class WriteoffError(Exception):
    """Base class of every error raised by this package on purpose.

    ``permanent``: the same inputs fail the same way on every try (bad config, refused data, a policy or approval
    error), so a retry only delays the alert. Errors about a system that may come back set it to False.
    """

    permanent: bool = True


class Unavailable(WriteoffError):
    """A source system or database could not be reached (timeout, refused connection, HTTP 5xx): worth a retry."""

    permanent = False


def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help: one of our named errors that is not about reachability.

    Anything else (a database driver's connection error, an HTTP timeout, a bug we did not name) counts as transient
    and keeps the task's retries.
    """
    return isinstance(exc, WriteoffError) and exc.permanent


class ConfigError(WriteoffError):
    """A configuration or policy file is invalid (names the file and field)."""


class InputError(WriteoffError):
    """Bad input data. Carries where it was found so that the message can point at it."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        message = shorten(message, MESSAGE_LIMIT)
        file = shorten(file, 300) if file is not None else None
        field = shorten(field, VALUE_LIMIT) if field is not None else None
        self.reason = message
        self.source = source
        self.file = file
        self.row = row
        self.field = field
        where = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("source", source),
                ("file", file),
                ("row", row),
                ("field", field),
            )
            if v is not None
        )
        super().__init__(f"{where}: {message}" if where else message)


class SourceUnavailable(InputError, Unavailable):
    """A source (database, HTTP API) could not be reached or kept failing with a retryable status."""


class UnknownCurrency(InputError):
    """A currency code that is not in ISO 4217 (or not one we support)."""


class InvalidAmount(InputError):
    """An amount that is not a finite decimal number, or is negative where it must not be."""


class LedgerError(WriteoffError):
    """Base class of errors about the general ledger."""


class UnbalancedEntry(LedgerError):
    """Debits and credits of a journal entry differ in at least one currency."""


class PostedEntryImmutable(LedgerError):
    """A posted journal entry (or audit row) cannot be updated or deleted; post a reversal instead."""


class ClosedPeriod(LedgerError):
    """Posting into a closed (or missing) fiscal period is refused; the entry is never silently re-dated."""


class AmountExceedsBalance(LedgerError):
    """A write-off or recovery larger than what it may be (open balance, amount written off)."""


class ApprovalError(WriteoffError):
    """An approval is missing, invalid, or breaks segregation of duties."""


class SegregationOfDuties(ApprovalError):
    """The same person prepared and approved, or the approver is not entitled to the tier."""


class AnswerNotTaken(ApprovalError):
    """What an approver answered cannot be recorded, and a different answer could be: an exclusion naming an invoice
    that is not an item of the batch, every item excluded, a limit the remaining items exceed. The request stays
    open (the approval operators and the answer gate match this class, not the message)."""


class AuditChainBroken(WriteoffError):
    """The hash chain of the audit log does not verify: a row was edited, inserted or deleted."""
