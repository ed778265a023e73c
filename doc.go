// Package persistence is the replay-safe persistence layer of an AI
// feature-building agent pipeline. The code lives in its packages: models
// (the five tables), migrate (the schema) and repository (the contract).
package persistence
