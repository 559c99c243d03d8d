INSERT INTO customers (entity_code, customer_ref, name, segment, bankruptcy_flag, bankruptcy_date, source)
SELECT entity, customer_ref, MAX(COALESCE(customer_name, customer_ref)), COALESCE(MAX(segment), 'default'),
       MAX(CASE WHEN bankrupt THEN 1 ELSE 0 END) = 1,
       CASE WHEN MAX(CASE WHEN bankrupt THEN 1 ELSE 0 END) = 1 THEN :d END, :src
FROM stg_invoices WHERE batch_id = :b
GROUP BY entity, customer_ref
ON CONFLICT (entity_code, customer_ref) DO UPDATE SET
    name = excluded.name,
    segment = excluded.segment,
    bankruptcy_flag = excluded.bankruptcy_flag,
    bankruptcy_date = CASE WHEN excluded.bankruptcy_flag THEN COALESCE(customers.bankruptcy_date, excluded.bankruptcy_date) END,
    source = excluded.source
WHERE customers.name IS DISTINCT FROM excluded.name
   OR customers.segment IS DISTINCT FROM excluded.segment
   OR customers.bankruptcy_flag IS DISTINCT FROM excluded.bankruptcy_flag
   OR customers.bankruptcy_date IS DISTINCT FROM CASE WHEN excluded.bankruptcy_flag THEN COALESCE(customers.bankruptcy_date, excluded.bankruptcy_date) END
   OR customers.source IS DISTINCT FROM excluded.source
