UPDATE holds SET end_date = CASE WHEN holds.start_date > :d THEN holds.start_date ELSE :d END
FROM invoices i, stg_invoices s
WHERE holds.invoice_id = i.id AND s.entity = i.entity_code AND s.invoice_ref = i.invoice_ref
  AND s.batch_id = :b AND NOT s.payment_plan
  AND holds.hold_type = :ht AND holds.end_date IS NULL AND holds.note = :note
