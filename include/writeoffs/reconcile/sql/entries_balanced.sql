-- reconcile.checks_gl.check_entries_balanced: the entries that do not balance per transaction or functional
-- currency, and the posted entries with fewer than two lines.
SELECT x.entry_id, x.kind, x.currency, x.dr, x.cr, e.idempotency_key, e.entity_code, e.status,
       e.source_type
FROM (
    SELECT entry_id, 'transaction' AS kind, currency, SUM(debit) AS dr, SUM(credit) AS cr
    FROM journal_lines GROUP BY entry_id, currency
    HAVING ROUND(SUM(debit) - SUM(credit), 4) <> 0
    UNION ALL
    SELECT entry_id, 'functional' AS kind, functional_currency, SUM(functional_debit),
           SUM(functional_credit)
    FROM journal_lines GROUP BY entry_id, functional_currency
    HAVING ROUND(SUM(functional_debit) - SUM(functional_credit), 4) <> 0
) x
JOIN journal_entries e ON e.id = x.entry_id
UNION ALL
SELECT e.id, 'lines', NULL, NULL, NULL, e.idempotency_key, e.entity_code, e.status, e.source_type
FROM journal_entries e
WHERE e.status = 'posted' AND (SELECT COUNT(*) FROM journal_lines l WHERE l.entry_id = e.id) < 2
ORDER BY 7, 3, 1
