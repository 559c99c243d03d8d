WITH
staged AS (
    SELECT pm.id AS payment_id, pm.payment_ref, i.id AS invoice_id, MIN(s.payment_date) AS paid_on,
           SUM(COALESCE(s.applied_amount, s.amount)) AS applied
    FROM stg_payments s
    JOIN payments pm ON pm.entity_code = s.entity AND pm.payment_ref = s.payment_ref
    JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
    WHERE s.batch_id = :b
    GROUP BY pm.id, pm.payment_ref, i.id
),
fresh AS (
    SELECT st.* FROM staged st
    WHERE st.applied > 0
      AND NOT EXISTS (SELECT 1 FROM payment_allocations a
                      WHERE a.payment_id = st.payment_id AND a.invoice_id = st.invoice_id)
),
prior AS (
    SELECT a.invoice_id, SUM(a.amount) AS paid FROM payment_allocations a
    WHERE a.kind = 'regular' AND a.invoice_id IN (SELECT invoice_id FROM fresh)
    GROUP BY a.invoice_id
),
roomy AS (
    SELECT f.payment_id, f.invoice_id, f.paid_on, f.applied, i.status,
           CASE WHEN i.status IN :recovery THEN 0
                WHEN i.written_off_amount = 0 THEN f.applied
                ELSE i.amount - i.written_off_amount - COALESCE(pr.paid, 0)
                     - COALESCE(SUM(f.applied) OVER (PARTITION BY f.invoice_id
                                                     ORDER BY f.paid_on, f.payment_ref, f.payment_id
                                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
           END AS room
    FROM fresh f JOIN invoices i ON i.id = f.invoice_id LEFT JOIN prior pr ON pr.invoice_id = f.invoice_id
),
split AS (
    SELECT payment_id, invoice_id, paid_on, status, applied,
           CASE WHEN room <= 0 THEN 0 WHEN room >= applied THEN applied ELSE room END AS regular
    FROM roomy
)
INSERT INTO payment_allocations (payment_id, invoice_id, amount, allocated_on, kind)
SELECT payment_id, invoice_id, regular, paid_on, 'regular' FROM split
WHERE regular > 0 AND status NOT IN :protected
UNION ALL
SELECT payment_id, invoice_id, applied - regular, paid_on, 'recovery' FROM split
WHERE applied - regular > 0
ON CONFLICT (payment_id, invoice_id, kind) DO NOTHING RETURNING kind
