-- The backlog sampler (issue 11 item 3, backpressure at `tracking.max_tracked`): unfinished
-- transactions counted and their oldest found from the index alone, once a second.
CREATE INDEX transactions_open_age ON transactions (finalized, accepted_at_ms);
