INSERT INTO invoices (entity_code, invoice_ref, source, customer_id, invoice_date, due_date, currency, amount,
                      open_balance, fx_rate, status, balance_transferred_to_parent, description)
SELECT s.entity, s.invoice_ref, :src, c.id, s.invoice_date, s.due_date, s.currency, s.amount,
       s.open_balance, s.fx_rate, CASE WHEN s.open_balance = 0 THEN 'paid' ELSE 'open' END, s.transferred_to_parent, s.description
FROM stg_invoices s
JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
WHERE s.batch_id = :b AND TRUE
