package bench

import (
	"testing"

	"github.com/google/uuid"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/repository"
)

// TestBaselineSendsRepositoryStatements checks that the baseline's
// creates send the repository's statements, as the repository renders them
// on PostgreSQL; its transitions take theirs from the repository itself. The repository runs on a DryRun session, whose
// statements only pass through the callback chains, so no server is
// needed.
func TestBaselineSendsRepositoryStatements(t *testing.T) {
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: "host=localhost"}), &gorm.Config{DryRun: true, DisableAutomaticPing: true, Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	capture := func(db *gorm.DB) { sent = append(sent, db.Statement.SQL.String()) }
	if err := db.Callback().Create().After("gorm:create").Register("bench:capture", capture); err != nil {
		t.Fatal(err)
	}
	repo := repository.New(db)
	ctx := t.Context()
	run, phase := uuid.New(), uuid.New()
	for _, c := range []struct {
		name string
		want string
		call func() error
	}{
		{"CreateFeatureRun", insertFeatureRunSQL, func() error {
			_, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
			return err
		}},
		{"CreateSandboxRecord", insertSandboxSQL, func() error {
			return repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "s", FeatureRunID: run})
		}},
		{"CreatePhaseResult", insertPhaseResultSQL, func() error {
			_, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "plan"})
			return err
		}},
		{"CreateAgentInvocation", insertAgentInvocationSQL, func() error {
			_, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phase, Agent: "a"})
			return err
		}},
		{"CreateCTAEvent", insertCTAEventSQL, func() error {
			return repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "c", FeatureRunID: run})
		}},
	} {
		sent = nil
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(sent) != 1 || sent[0] != c.want {
			t.Errorf("%s: the repository sends %q,\nthe baseline %q", c.name, sent, c.want)
		}
	}
}
