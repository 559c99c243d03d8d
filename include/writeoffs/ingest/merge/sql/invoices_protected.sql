SELECT COUNT(*) FROM stg_invoices s JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref WHERE s.batch_id = :b AND i.status IN :protected
