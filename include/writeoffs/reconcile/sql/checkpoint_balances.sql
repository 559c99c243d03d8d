-- reconcile.checks_checkpoints._checkpoint_balances: the invoices whose balance in checkpoint cp differs from the
-- movements effective on or before d (a Date bind) up to its high-water mark hw; at most cap rows.
SELECT i.entity_code, i.currency, x.invoice_id, i.invoice_ref, x.expected, x.actual
FROM (SELECT u.invoice_id, SUM(u.expected) AS expected, SUM(u.actual) AS actual FROM (
        SELECT m.invoice_id, m.balance_change AS expected, 0 AS actual FROM invoice_movements m
        WHERE m.effective_date <= :d AND m.id <= :hw
        UNION ALL
        SELECT b.invoice_id, 0, b.balance FROM balance_checkpoint_rows b
        WHERE b.checkpoint_id = :cp) u
      GROUP BY u.invoice_id HAVING SUM(u.expected) <> SUM(u.actual)) x
LEFT JOIN invoices i ON i.id = x.invoice_id
ORDER BY i.entity_code, i.currency, x.invoice_id
LIMIT :cap
