INSERT INTO payments (entity_code, payment_ref, customer_id, payment_date, currency, amount, source)
SELECT s.entity, s.payment_ref, MIN(c.id), MIN(s.payment_date), MIN(s.currency), MAX(s.amount), :src
FROM stg_payments s JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
WHERE s.batch_id = :b
GROUP BY s.entity, s.payment_ref
ON CONFLICT (entity_code, payment_ref) DO NOTHING
