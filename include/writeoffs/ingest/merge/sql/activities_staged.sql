SELECT s.activity_type, s.activity_date, s.end_date, s.outcome, c.id AS customer_id, i.id AS invoice_id,
       CAST(ROW_NUMBER() OVER (PARTITION BY c.id, i.id, s.activity_type, s.activity_date
                               ORDER BY s.source_file, s.source_row)
            AS VARCHAR(12)) AS occurrence
FROM stg_activities s
JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
LEFT JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
WHERE s.batch_id = :b AND (s.invoice_ref IS NULL OR i.id IS NOT NULL)
