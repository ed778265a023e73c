-- Adds the step of a row's last fenced move (repository.Repository.AtStep)
-- to feature runs and sandboxes. Hand-written, as the schema it upgrades;
-- migrate.Up sends each statement only when its column is missing.
--
-- Each column is added last, nullable and without a default, which
-- MariaDB adds in place (instantly) without rewriting the table or
-- touching a row: the rows already there read NULL.
ALTER TABLE `feature_runs` ADD COLUMN IF NOT EXISTS `step` bigint NULL;
ALTER TABLE `sandboxes` ADD COLUMN IF NOT EXISTS `step` bigint NULL;
