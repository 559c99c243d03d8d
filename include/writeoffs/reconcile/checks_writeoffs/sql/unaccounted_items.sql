-- reconcile.checks_writeoffs.posted._unaccounted_items: the write-off items not accounted for, with their batch,
-- invoice and journal entry. batch_statuses (batches whose posting finished) and settled_statuses (item statuses
-- that account for an item) are expanding binds.
SELECT w.id, w.batch_id, b.batch_key, b.status AS batch_status, i.entity_code, w.currency, w.amount,
       w.status, w.skip_reason, w.journal_entry_id, e.status AS entry_status,
       e.source_type, i.invoice_ref
FROM writeoffs w
JOIN invoices i ON i.id = w.invoice_id
LEFT JOIN writeoff_batches b ON b.id = w.batch_id
LEFT JOIN journal_entries e ON e.id = w.journal_entry_id
WHERE (w.status IN ('posted', 'reversed')
       AND (e.id IS NULL OR e.status <> 'posted' OR e.source_type <> 'writeoff'))
   OR (w.status = 'posted' AND EXISTS (SELECT 1 FROM journal_entries rv
                                      WHERE rv.reverses_entry_id = w.journal_entry_id
                                        AND rv.status = 'posted'))
   OR (w.status = 'skipped' AND (w.skip_reason IS NULL OR TRIM(w.skip_reason) = ''))
   OR (b.status IN :batch_statuses AND w.status NOT IN :settled_statuses)
ORDER BY w.batch_id, w.id
