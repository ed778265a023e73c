-- Indexes runs by phase, then status and creation, for the run list and
-- the counts of one phase. Hand-written, as the schema it upgrades;
-- migrate.Up sends the statement only when its index is missing.
--
-- InnoDB builds a secondary index in place, without rewriting the table,
-- and LOCK=NONE lets writes to it go on meanwhile (the statement fails
-- rather than block them). CTA events need no new index here: InnoDB ends
-- every secondary index with the primary key, so idx_cta_events_pending_expiry
-- (status, expires_at) already orders each status by deadline, then ID.
CREATE INDEX IF NOT EXISTS `idx_feature_runs_phase_status_created` ON `feature_runs` (`phase`, `status`, `created_at`, `id`) ALGORITHM=INPLACE LOCK=NONE;
