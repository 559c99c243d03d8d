INSERT INTO customers (entity_code, customer_ref, name, source)
SELECT r.e, r.ref, r.ref, :src FROM (SELECT DISTINCT entity AS e, customer_ref AS ref FROM stg_activities WHERE batch_id = :b) AS r WHERE true
ON CONFLICT (entity_code, customer_ref) DO NOTHING
