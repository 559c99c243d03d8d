INSERT INTO customers (entity_code, customer_ref, name, source)
SELECT r.e, r.ref, r.ref, :src FROM (SELECT DISTINCT entity AS e, parent_customer_ref AS ref FROM stg_invoices WHERE batch_id = :b AND parent_customer_ref IS NOT NULL) AS r WHERE true
ON CONFLICT (entity_code, customer_ref) DO NOTHING
