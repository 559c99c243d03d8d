UPDATE holds SET end_date = CASE WHEN holds.start_date > :d THEN holds.start_date ELSE :d END
WHERE holds.end_date IS NULL AND holds.hold_type = 'dispute' AND holds.invoice_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM invoices i WHERE i.id = holds.invoice_id AND i.status = 'paid')
