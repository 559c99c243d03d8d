INSERT INTO collection_activities (customer_id, invoice_id, activity_type, activity_date, end_date, outcome,
                                   source, source_ref)
SELECT r.customer_id, r.invoice_id, r.activity_type, r.activity_date, r.end_date, r.outcome,
       CAST(:src AS VARCHAR(64)), r.occurrence
FROM (
    SELECT s.activity_type, s.activity_date, s.end_date, s.outcome, c.id AS customer_id, i.id AS invoice_id,
           CAST(ROW_NUMBER() OVER (PARTITION BY c.id, i.id, s.activity_type, s.activity_date
                                   ORDER BY s.source_file, s.source_row)
                AS VARCHAR(12)) AS occurrence
    FROM stg_activities s
    JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
    LEFT JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
    WHERE s.batch_id = :b AND (s.invoice_ref IS NULL OR i.id IS NOT NULL)
) AS r
WHERE NOT EXISTS (SELECT 1 FROM collection_activities a WHERE a.customer_id = r.customer_id AND a.source = :src
                  AND a.activity_type = r.activity_type
                  AND a.activity_date = r.activity_date AND a.source_ref = r.occurrence
                  AND (a.invoice_id = r.invoice_id OR (a.invoice_id IS NULL AND r.invoice_id IS NULL)))
