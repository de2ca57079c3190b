-- Retention (issue 11 item 7): a finished transaction's broadcast jobs and submissions are
-- deleted with it by hash (and an expired transaction's open jobs are closed by hash).
CREATE INDEX broadcast_jobs_tx ON broadcast_jobs (tx_hash);
CREATE INDEX submissions_tx ON submissions (tx_hash);
