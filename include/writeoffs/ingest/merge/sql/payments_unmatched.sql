SELECT COALESCE(SUM(CASE WHEN i.id IS NULL THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN i.status IN :protected THEN 1 ELSE 0 END), 0)
FROM stg_payments s
LEFT JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
WHERE s.batch_id = :b AND s.invoice_ref IS NOT NULL
