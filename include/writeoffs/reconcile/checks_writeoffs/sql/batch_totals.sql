-- reconcile.checks_writeoffs.posted._batch_totals: per batch of batch_ids (an expanding bind), the amount approved
-- for posting, the amount posted with an entry or skipped with a reason, and the number of items.
SELECT w.batch_id,
       SUM(CASE WHEN w.status <> 'excluded' THEN w.amount ELSE 0 END) AS expected,
       SUM(CASE WHEN (w.status IN ('posted', 'reversed') AND e.status = 'posted'
                      AND e.source_type = 'writeoff')
                  OR (w.status = 'skipped' AND TRIM(COALESCE(w.skip_reason, '')) <> '')
                THEN w.amount ELSE 0 END) AS actual,
       COUNT(*) AS n
FROM writeoffs w LEFT JOIN journal_entries e ON e.id = w.journal_entry_id
WHERE w.batch_id IN :batch_ids GROUP BY w.batch_id
