"""Pure domain: money, ids, transactions, errors. No I/O here."""
