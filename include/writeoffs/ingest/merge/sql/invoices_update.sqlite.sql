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
  AND (invoices.customer_id IS NOT c.id
       OR invoices.invoice_date IS NOT s.invoice_date
       OR invoices.due_date IS NOT s.due_date
       OR invoices.currency IS NOT s.currency
       OR invoices.amount IS NOT s.amount
       OR invoices.open_balance IS NOT CASE WHEN s.open_balance > invoices.written_off_amount THEN s.open_balance - invoices.written_off_amount ELSE 0 END
       OR invoices.fx_rate IS NOT s.fx_rate
       OR invoices.status IS NOT CASE WHEN (CASE WHEN s.open_balance > invoices.written_off_amount THEN s.open_balance - invoices.written_off_amount ELSE 0 END) = 0 THEN 'paid' WHEN invoices.status IN :kept_while_open THEN invoices.status ELSE 'open' END
       OR invoices.balance_transferred_to_parent IS NOT s.transferred_to_parent
       OR invoices.description IS NOT s.description)
