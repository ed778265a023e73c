-- The whole schema, as migrate.Up makes it on an empty MariaDB. Up sends
-- the numbered files instead: one CREATE TABLE a table, each sent only
-- when its table is missing, then one ALTER TABLE a column added since,
-- each sent only when its column is missing, and one CREATE INDEX an
-- index added since, each sent only when its index is missing; every
-- statement is atomic.
-- Hand-written: see the README for the types.
--
-- IDs: UUIDs as CHAR(36) in ascii_bin (the text every driver binds, in
-- byte order), names and string IDs in utf8mb4_nopad_bin, where "A" and
-- "a", and "a" and "a ", are different. Times: DATETIME(6), in UTC.
-- JSON: MariaDB's JSON, LONGTEXT in utf8mb4_bin with a json_valid check.
CREATE TABLE IF NOT EXISTS `feature_runs` (
	`id` char(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	`phase` varchar(255) NOT NULL,
	`status` varchar(16) NOT NULL,
	`memories` json NOT NULL,
	`metadata` json NULL,
	`error` longtext NULL,
	`created_at` datetime(6) NOT NULL,
	`updated_at` datetime(6) NOT NULL,
	`completed_at` datetime(6) NULL,
	`step` bigint NULL,
	PRIMARY KEY (`id`),
	INDEX `idx_feature_runs_created` (`created_at`, `id`),
	INDEX `idx_feature_runs_status_created` (`status`, `created_at`, `id`),
	INDEX `idx_feature_runs_phase_status_created` (`phase`, `status`, `created_at`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- MariaDB has no partial index: idx_sandboxes_live indexes every status,
-- and a search for the live ones reads its three ranges.
CREATE TABLE IF NOT EXISTS `sandboxes` (
	`id` varchar(255) NOT NULL,
	`feature_run_id` char(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	`status` varchar(16) NOT NULL,
	`provider` varchar(255) NOT NULL,
	`metadata` json NULL,
	`created_at` datetime(6) NOT NULL,
	`updated_at` datetime(6) NOT NULL,
	`started_at` datetime(6) NULL,
	`stopped_at` datetime(6) NULL,
	`step` bigint NULL,
	PRIMARY KEY (`id`),
	INDEX `idx_sandboxes_live` (`status`),
	INDEX `idx_sandboxes_run_created` (`feature_run_id`, `created_at`),
	CONSTRAINT `fk_sandboxes_feature_run` FOREIGN KEY (`feature_run_id`) REFERENCES `feature_runs` (`id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

CREATE TABLE IF NOT EXISTS `phase_results` (
	`id` char(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	`feature_run_id` char(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	`phase` varchar(255) NOT NULL,
	`status` varchar(16) NOT NULL,
	`output` json NULL,
	`error` longtext NULL,
	`created_at` datetime(6) NOT NULL,
	`updated_at` datetime(6) NOT NULL,
	`finished_at` datetime(6) NULL,
	PRIMARY KEY (`id`),
	UNIQUE INDEX `idx_phase_results_id_run` (`id`, `feature_run_id`),
	INDEX `idx_phase_results_run_created` (`feature_run_id`, `created_at`),
	CONSTRAINT `fk_phase_results_feature_run` FOREIGN KEY (`feature_run_id`) REFERENCES `feature_runs` (`id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

CREATE TABLE IF NOT EXISTS `agent_invocations` (
	`id` char(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	`feature_run_id` char(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	`phase_result_id` char(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
	`agent` varchar(255) NOT NULL,
	`model` varchar(255) NOT NULL,
	`status` varchar(16) NOT NULL,
	`input` json NULL,
	`steps` json NULL,
	`tool_calls` json NULL,
	`output` json NULL,
	`input_tokens` bigint NOT NULL,
	`output_tokens` bigint NOT NULL,
	`cost_nano_usd` bigint NOT NULL,
	`error` longtext NULL,
	`created_at` datetime(6) NOT NULL,
	`updated_at` datetime(6) NOT NULL,
	`finished_at` datetime(6) NULL,
	`provider` varchar(255) NULL,
	`response_model` varchar(255) NULL,
	`provider_request_id` varchar(255) NULL,
	`cache_read_input_tokens` bigint NULL,
	`cache_write_input_tokens` bigint NULL,
	`reasoning_output_tokens` bigint NULL,
	`finish_reason` varchar(255) NULL,
	`started_at` datetime(6) NULL,
	`time_to_first_token_micros` bigint NULL,
	`parent_invocation_id` char(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
	PRIMARY KEY (`id`),
	UNIQUE INDEX `idx_agent_invocations_id_run` (`id`, `feature_run_id`),
	INDEX `idx_agent_invocations_parent_invocation_id` (`parent_invocation_id`),
	INDEX `idx_agent_invocations_phase_result_id` (`phase_result_id`),
	INDEX `idx_agent_invocations_run_created` (`feature_run_id`, `created_at`),
	CONSTRAINT `fk_agent_invocations_feature_run` FOREIGN KEY (`feature_run_id`) REFERENCES `feature_runs` (`id`) ON DELETE CASCADE,
	CONSTRAINT `fk_agent_invocations_phase_result` FOREIGN KEY (`phase_result_id`, `feature_run_id`) REFERENCES `phase_results` (`id`, `feature_run_id`) ON DELETE CASCADE,
	CONSTRAINT `fk_agent_invocations_parent_invocation` FOREIGN KEY (`parent_invocation_id`, `feature_run_id`) REFERENCES `agent_invocations` (`id`, `feature_run_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- MariaDB has no partial index: idx_cta_events_pending_expiry leads with
-- the status, so the sweeper reads the pending events in expiry order.
CREATE TABLE IF NOT EXISTS `cta_events` (
	`id` varchar(255) NOT NULL,
	`feature_run_id` char(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	`kind` varchar(255) NOT NULL,
	`status` varchar(16) NOT NULL,
	`request_data` json NULL,
	`response_data` json NULL,
	`expires_at` datetime(6) NULL,
	`created_at` datetime(6) NOT NULL,
	`updated_at` datetime(6) NOT NULL,
	`resolved_at` datetime(6) NULL,
	PRIMARY KEY (`id`),
	INDEX `idx_cta_events_pending_expiry` (`status`, `expires_at`),
	INDEX `idx_cta_events_run_created` (`feature_run_id`, `created_at`),
	CONSTRAINT `fk_cta_events_feature_run` FOREIGN KEY (`feature_run_id`) REFERENCES `feature_runs` (`id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
