"""One chunk of generated rows (columnar) and the global id counters that run across chunks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Chunk:
    """One chunk of generated rows, columnar. Ids are global and sequential (1-based)."""

    index: int
    cust_start: int
    cust_stop: int
    # invoices
    inv_id: np.ndarray
    inv_cust: np.ndarray
    inv_date: np.ndarray
    due_date: np.ndarray
    amount: np.ndarray  # cents
    open_balance: np.ndarray  # cents
    fx_e4: np.ndarray
    disputed: np.ndarray
    dispute_since: np.ndarray
    payment_plan: np.ndarray
    transferred: np.ndarray
    description: np.ndarray  # index into DESCRIPTION_TABLE
    # payment allocations, one row per (payment, invoice)
    pay_id: np.ndarray
    pay_cust: np.ndarray  # the payer (the parent for balances transferred to it)
    pay_date: np.ndarray
    pay_amount: np.ndarray  # the whole payment, repeated on each of its allocation rows
    alloc_id: np.ndarray
    alloc_inv: np.ndarray  # invoice id
    alloc_local: np.ndarray  # invoice position within the chunk
    applied: np.ndarray
    # collection activities
    act_id: np.ndarray
    act_cust: np.ndarray
    act_inv: np.ndarray  # invoice id, 0 for account-level activities
    act_local: np.ndarray  # invoice position within the chunk, -1 for account-level
    act_type: np.ndarray
    act_channel: np.ndarray  # 0 call, 1 email (contact attempts only)
    act_date: np.ndarray
    act_end: np.ndarray
    act_outcome: np.ndarray
    # holds
    hold_id: np.ndarray
    hold_cust: np.ndarray
    hold_inv: np.ndarray
    hold_type: np.ndarray
    hold_start: np.ndarray
    hold_end: np.ndarray
    hold_resolution: np.ndarray
    hold_note: np.ndarray  # dispute: index into DISPUTE_REASONS; plan: number of instalments

    @property
    def n_invoices(self) -> int:
        return int(self.inv_id.size)

    @property
    def payment_rows(self) -> np.ndarray:
        """Mask of allocation rows that start a new payment (a payment can pay two invoices)."""
        first = np.ones(self.pay_id.size, dtype=bool)
        first[1:] = self.pay_id[1:] != self.pay_id[:-1]
        return first


@dataclass(slots=True)
class _Counters:
    invoice: int = 0
    payment: int = 0
    allocation: int = 0
    activity: int = 0
    hold: int = 0
