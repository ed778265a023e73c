// Package models holds the GORM models of the five pipeline tables:
// feature_runs, sandboxes, phase_results, agent_invocations and cta_events.
//
// The models describe the schema (see package migrate) and are what the
// repository reads back. Writes go through package repository, which keeps
// them replay-safe; saving these structs directly with GORM bypasses those
// guarantees.
package models
