-- Write-off entries and reversals of write-off entries posted in [start, end], one row per entry (its debit line
-- carries the amount and the invoice), signed: +1 write-off, -1 reversal.
SELECT e.entity_code, l.currency, l.functional_currency,
       CASE WHEN e.source_type = 'writeoff' THEN 1 ELSE -1 END AS sign,
       l.debit AS amount, l.functional_debit AS functional_amount,
       e.id AS entry_id, e.posting_date, COALESCE(o.id, e.id) AS writeoff_entry_id, l.invoice_id
FROM journal_entries e
JOIN journal_lines l ON l.entry_id = e.id AND l.debit > 0
LEFT JOIN journal_entries o ON o.id = e.reverses_entry_id
WHERE e.status = 'posted' AND e.posting_date >= :start AND e.posting_date <= :end
  AND (e.source_type = 'writeoff' OR (e.source_type = 'reversal' AND o.source_type = 'writeoff'))
