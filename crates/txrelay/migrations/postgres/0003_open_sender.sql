-- The nonce watch's "a lower nonce of the same sender is still open" probe (issue 11 item 5):
-- unfinished rows of one sender in nonce order.
CREATE INDEX transactions_open_sender ON transactions (chain_id, finalized, sender, nonce);
