UPDATE invoices SET
    customer_id = c.id,
    invoice_date = s.invoice_date,
    due_date = s.due_date,
    currency = s.currency,
    amount = s.amount,
    open_balance = CASE WHEN s.open_balance > invoices.written_off_amount THEN s.open_balance - invoices.written_off_amount ELSE 0 END,
    fx_rate = s.fx_rate,
    status = CASE WHEN (CASE WHEN s.open_balance > invoices.written_off_amount THEN s.open_balance - invoices.written_off_amount ELSE 0 END) = 0 THEN 'paid' WHEN invoices.status IN :kept_while_open THEN invoices.status ELSE 'open' END,
    balance_transferred_to_parent = s.transferred_to_parent,
    description = s.description,
    source = :src
FROM stg_invoices s JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
WHERE s.batch_id = :b AND invoices.entity_code = s.entity AND invoices.invoice_ref = s.invoice_ref
  AND invoices.status NOT IN :protected
  AND (invoices.customer_id IS DISTINCT FROM c.id
       OR invoices.invoice_date IS DISTINCT FROM s.invoice_date
       OR invoices.due_date IS DISTINCT FROM s.due_date
       OR invoices.currency IS DISTINCT FROM s.currency
       OR invoices.amount IS DISTINCT FROM s.amount
       OR invoices.open_balance IS DISTINCT FROM CASE WHEN s.open_balance > invoices.written_off_amount THEN s.open_balance - invoices.written_off_amount ELSE 0 END
       OR invoices.fx_rate IS DISTINCT FROM s.fx_rate
       OR invoices.status IS DISTINCT FROM CASE WHEN (CASE WHEN s.open_balance > invoices.written_off_amount THEN s.open_balance - invoices.written_off_amount ELSE 0 END) = 0 THEN 'paid' WHEN invoices.status IN :kept_while_open THEN invoices.status ELSE 'open' END
       OR invoices.balance_transferred_to_parent IS DISTINCT FROM s.transferred_to_parent
       OR invoices.description IS DISTINCT FROM s.description)
