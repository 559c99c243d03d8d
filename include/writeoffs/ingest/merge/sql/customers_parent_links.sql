UPDATE customers SET parent_id = m.parent_id
FROM (SELECT DISTINCT s.entity, s.customer_ref, par.id AS parent_id
      FROM stg_invoices s
      JOIN customers par ON par.entity_code = s.entity AND par.customer_ref = s.parent_customer_ref
      WHERE s.batch_id = :b AND s.parent_customer_ref IS NOT NULL AND s.parent_customer_ref <> s.customer_ref
     ) AS m
WHERE customers.entity_code = m.entity AND customers.customer_ref = m.customer_ref
  AND (customers.parent_id IS NULL OR customers.parent_id <> m.parent_id)
