// Package models holds the GORM models of the five pipeline tables:
// feature_runs, sandboxes, phase_results, agent_invocations and cta_events.
//
// The models describe the schema, which
// [github.com/agentpipeline/persistence/migrate.Up] makes, and are what the
// repository reads back. Writes go through
// [github.com/agentpipeline/persistence/repository], whose inputs name
// their fields as the models' fields they fill; it keeps them
// replay-safe, and saving these structs directly with GORM bypasses those
// guarantees.
package models
