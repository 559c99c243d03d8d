-- Sales of [start, end] per entity, currency and booked rate (the functional total is computed in Decimal).
SELECT entity_code, currency, fx_rate, SUM(amount) FROM invoices
WHERE invoice_date >= :start AND invoice_date <= :end GROUP BY entity_code, currency, fx_rate
