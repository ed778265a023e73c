package repository

import (
	"context"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/agentpipeline/persistence/internal/dialect"
	"github.com/agentpipeline/persistence/models"
)

// inserts are the creates' INSERT … ON CONFLICT DO NOTHING statements
// (clause.OnConflict{DoNothing: true}, which GORM renders on MariaDB as
// ON DUPLICATE KEY UPDATE id=id, never INSERT IGNORE, which would turn a
// missing parent into a warning), built by GORM for the Repository's
// database when the Repository is made,
// so that a create costs no statement building. Every column is a bind
// variable, NULL included, so one text serves every call; UUIDs bind as
// text, which every driver sends as is.
type inserts struct {
	featureRun, sandbox, phaseResult, agentInvocation, ctaEvent rendered
	// fkPhaseResult and fkParentInvocation name the foreign keys from an
	// agent invocation to its phase result and to its parent invocation,
	// which tell those parents' absence from the run's.
	fkPhaseResult, fkParentInvocation string
}

// rendered is a statement of table, in the database's SQL, with the
// names of its arguments, for the error of a write too large: input names
// them together, and fields each, by var ("" for a var the caller does
// not give).
type rendered struct {
	table  string
	sql    string
	input  string
	fields []string
	// statement is sql, whose vars are the call's.
	statement *dialect.Statement
}

// The columns each create writes, in the order of its vars. Columns left
// out start NULL.
var (
	featureRunColumns      = []string{"id", "phase", "status", "memories", "metadata", "created_at", "updated_at"}
	sandboxColumns         = []string{"id", "feature_run_id", "status", "provider", "metadata", "created_at", "updated_at"}
	phaseResultColumns     = []string{"id", "feature_run_id", "phase", "status", "created_at", "updated_at"}
	agentInvocationColumns = []string{"id", "feature_run_id", "phase_result_id", "parent_invocation_id", "agent", "model", "provider", "status", "input",
		"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "reasoning_output_tokens", "cost_nano_usd",
		"started_at", "created_at", "updated_at"}
	ctaEventColumns = []string{"id", "feature_run_id", "kind", "status", "request_data", "expires_at", "created_at", "updated_at"}
)

// The fields of each create's input that its vars hold, by var.
var (
	featureRunFields      = []string{"ID", "Phase", "", "Memories", "Metadata", "", ""}
	sandboxFields         = []string{"ID", "FeatureRunID", "", "Provider", "Metadata", "", ""}
	phaseResultFields     = []string{"ID", "FeatureRunID", "Phase", "", "", ""}
	agentInvocationFields = []string{"ID", "FeatureRunID", "PhaseResultID", "ParentInvocationID", "Agent", "Model", "Provider", "", "Input",
		"", "", "", "", "", "", "StartedAt", "", ""}
	ctaEventFields = []string{"ID", "FeatureRunID", "Kind", "", "RequestData", "ExpiresAt", "", ""}
)

func renderInserts(db *gorm.DB) (*inserts, error) {
	var ins inserts
	var err error
	for _, x := range []struct {
		dest    *rendered
		model   any
		columns []string
		input   string
		fields  []string
	}{
		{&ins.featureRun, &models.FeatureRun{}, featureRunColumns, "NewFeatureRun", featureRunFields},
		{&ins.sandbox, &models.Sandbox{}, sandboxColumns, "NewSandbox", sandboxFields},
		{&ins.phaseResult, &models.PhaseResult{}, phaseResultColumns, "NewPhaseResult", phaseResultFields},
		{&ins.agentInvocation, &models.AgentInvocation{}, agentInvocationColumns, "NewAgentInvocation", agentInvocationFields},
		{&ins.ctaEvent, &models.CTAEvent{}, ctaEventColumns, "NewCTAEvent", ctaEventFields},
	} {
		var stmt *gorm.Statement
		if *x.dest, stmt, err = renderInsert(db, x.model, x.columns); err != nil {
			return nil, err
		}
		x.dest.statement = &dialect.Statement{SQL: x.dest.sql}
		x.dest.input = x.input
		x.dest.fields = make([]string, len(x.fields))
		for i, f := range x.fields {
			if f != "" {
				x.dest.fields[i] = x.input + "." + f
			}
		}
		for name, fk := range map[string]*string{"PhaseResult": &ins.fkPhaseResult, "ParentInvocation": &ins.fkParentInvocation} {
			if rel, ok := stmt.Schema.Relationships.Relations[name]; ok {
				if c := rel.ParseConstraint(); c != nil {
					*fk = c.Name
				}
			}
		}
	}
	return &ins, nil
}

// renderInsert builds the INSERT of model's table with GORM's clauses and
// the Create chain's clause list, as GORM's Create does, but without
// running the chain: the statement runs through it at each create.
func renderInsert(db *gorm.DB, model any, columns []string) (rendered, *gorm.Statement, error) {
	stmt := db.Session(&gorm.Session{NewDB: true, Initialized: true, Context: context.Background()}).Statement
	if err := stmt.Parse(model); err != nil {
		return rendered{}, nil, fmt.Errorf("repository: render the insert of %T: %w", model, err)
	}
	values := clause.Values{Columns: make([]clause.Column, len(columns)), Values: [][]any{make([]any, len(columns))}}
	for i, c := range columns {
		values.Columns[i] = clause.Column{Name: c}
		values.Values[0][i] = nil
	}
	stmt.AddClause(clause.Insert{})
	stmt.AddClause(values)
	stmt.AddClause(clause.OnConflict{DoNothing: true})
	stmt.Build(db.Callback().Create().Clauses...)
	return rendered{table: stmt.Table, sql: stmt.SQL.String()}, stmt, nil
}

// create runs ins with vars and reports a missing parent as
// *foreignKeyError, and a statement larger than the server takes as an
// *InputError naming ins's input or the field at fault. A row that already
// exists is a replay: nothing changes, and it is no error.
func (r *Repository) create(ctx context.Context, ins rendered, vars ...any) error {
	if err := r.fit(ctx, ins.statement, vars); err != nil {
		return tooLarge(err, ins.input, ins.fields...)
	}
	_, err := r.insert(ctx, ins.table, ins.sql, vars)
	return tooLarge(err, ins.input, ins.fields...)
}
