package repository

import (
	"context"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/agentpipeline/persistence/models"
)

// jsonValue is canonical JSON on its way to a JSON column; nil is SQL NULL.
//
// It binds as text, except where a dialect needs otherwise: SQLite gives
// columns declared JSON numeric affinity, which would turn the text of a
// top-level JSON number into an SQLite number (losing digits beyond a
// float64, and failing datatypes.JSON's Scan), so there numbers bind as a
// BLOB holding the same text, which SQLite stores untouched.
type jsonValue []byte

// GormValue implements gorm.Valuer.
func (j jsonValue) GormValue(_ context.Context, db *gorm.DB) clause.Expr {
	if j == nil {
		return gorm.Expr("NULL")
	}
	if d, ok := dialects[db.Dialector.Name()]; ok {
		return gorm.Expr("?", d.json(j))
	}
	return gorm.Expr("?", string(j))
}

// isNumber reports whether the canonical JSON j is a number.
func isNumber(j []byte) bool {
	return len(j) > 0 && (j[0] == '-' || (j[0] >= '0' && j[0] <= '9'))
}

// The row types below are what creates insert: the model, with its JSON
// columns bound as jsonValue and its UUID columns as text, which pgx sends
// as is, where a uuid.UUID goes through its driver.Valuer and a failed
// binary encoding first. GORM resolves a column to the outermost field of
// that name, and the embedded model gives the table name.

type featureRunRow struct {
	models.FeatureRun
	ID       string
	Memories jsonValue
	Metadata jsonValue
}

type sandboxRow struct {
	models.Sandbox
	FeatureRunID string
	Metadata     jsonValue
}

type phaseResultRow struct {
	models.PhaseResult
	ID           string
	FeatureRunID string
}

type agentInvocationRow struct {
	models.AgentInvocation
	ID            string
	FeatureRunID  string
	PhaseResultID *string
	Input         jsonValue
}

type ctaEventRow struct {
	models.CTAEvent
	FeatureRunID string
	RequestData  jsonValue
}
