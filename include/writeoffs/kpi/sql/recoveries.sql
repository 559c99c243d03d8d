-- Recoveries of [start, end] per entity, currency and the booked rate of the invoice.
SELECT i.entity_code, r.currency, i.fx_rate, SUM(r.amount)
FROM recoveries r JOIN invoices i ON i.id = r.invoice_id
WHERE r.recovery_date >= :start AND r.recovery_date <= :end GROUP BY i.entity_code, r.currency, i.fx_rate
