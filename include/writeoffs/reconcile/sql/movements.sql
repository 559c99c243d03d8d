-- reconcile.checks_gl.check_movements: the invoices whose movements do not add up to their open balance; at most
-- cap rows.
SELECT i.entity_code, i.currency, i.id, i.invoice_ref, i.open_balance AS expected,
       COALESCE(m.total, 0) AS actual
FROM invoices i
LEFT JOIN (SELECT invoice_id, SUM(balance_change) AS total FROM invoice_movements GROUP BY invoice_id) m
       ON m.invoice_id = i.id
WHERE ROUND(i.open_balance - COALESCE(m.total, 0), 4) <> 0
ORDER BY i.entity_code, i.currency, i.id
LIMIT :cap
