// Package persistence is the replay-safe persistence layer of an AI
// feature-building agent pipeline. The code lives in its packages:
// [github.com/agentpipeline/persistence/models] (the five tables),
// [github.com/agentpipeline/persistence/migrate] (the schema),
// [github.com/agentpipeline/persistence/repository] (the contract, whose
// [github.com/agentpipeline/persistence/repository.Repository] every write
// goes through), [github.com/agentpipeline/persistence/persistencetest]
// (checking your own workflow steps) and
// [github.com/agentpipeline/persistence/runview] (a viewer of the runs).
// This package holds no code: its tests run the contract suite on every
// database and check the README and docs/.
package persistence
