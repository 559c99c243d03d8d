WITH open_holds AS MATERIALIZED (
    SELECT invoice_id, hold_type FROM holds WHERE end_date IS NULL AND invoice_id IS NOT NULL
)
INSERT INTO holds (customer_id, invoice_id, hold_type, start_date, note)
SELECT i.customer_id, i.id, f.hold_type, f.start_date, :note
FROM (SELECT s.entity, s.invoice_ref, 'dispute' AS hold_type, COALESCE(s.dispute_since, :d) AS start_date
      FROM stg_invoices s WHERE s.batch_id = :b AND s.disputed
      UNION ALL
      SELECT s.entity, s.invoice_ref, 'payment_plan' AS hold_type, COALESCE(:d, :d) AS start_date
      FROM stg_invoices s WHERE s.batch_id = :b AND s.payment_plan) AS f
JOIN invoices i ON i.entity_code = f.entity AND i.invoice_ref = f.invoice_ref
WHERE NOT EXISTS (SELECT 1 FROM open_holds h WHERE h.invoice_id = i.id AND h.hold_type = f.hold_type)
  AND (f.hold_type <> 'dispute' OR i.status <> 'paid')
