package bench

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/repository"
)

// TestBaselineSendsRepositoryStatements checks that each baseline sends
// the repository's statements on its database: the creates' INSERTs, and
// the transitions' statements as the repository renders them there. The
// repository runs on a DryRun session, whose statements only pass through
// the callback chains, so no server is needed. A DryRun session sends the
// first statement of a transition only, so MariaDB's probes, which the
// baselines render with the same Dialect.Guard as the repository, are
// checked by TestBaselineWritesLikeRepository, whose replays read them,
// and by the equal bytes both sides send.
func TestBaselineSendsRepositoryStatements(t *testing.T) {
	run, phase := uuid.New(), uuid.New()
	for _, db := range []struct {
		name    string
		session func() *gorm.DB
		sql     *statements
	}{
		{"postgres", postgresDryRun, pgStatements},
		{"mariadb", mariadbDryRun, mariadbStatements},
	} {
		t.Run(db.name, func(t *testing.T) {
			sends := func(name, want string, call func(context.Context, *repository.Repository) error) {
				t.Helper()
				sent := dryRun(db.session(), call)
				if len(sent) != 1 || sent[0] != want {
					t.Errorf("%s: the repository sends %q,\nthe baseline %q", name, sent, want)
				}
			}
			sends("CreateFeatureRun", db.sql.insertFeatureRun, func(ctx context.Context, r *repository.Repository) error {
				_, err := r.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
				return err
			})
			sends("CreateSandboxRecord", db.sql.insertSandbox, func(ctx context.Context, r *repository.Repository) error {
				return r.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "s", FeatureRunID: run})
			})
			sends("CreatePhaseResult", db.sql.insertPhaseResult, func(ctx context.Context, r *repository.Repository) error {
				_, err := r.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: "plan"})
				return err
			})
			sends("CreateAgentInvocation", db.sql.insertAgentInvocation, func(ctx context.Context, r *repository.Repository) error {
				_, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, PhaseResultID: &phase, Agent: "a"})
				return err
			})
			sends("CreateCTAEvent", db.sql.insertCTAEvent, func(ctx context.Context, r *repository.Repository) error {
				return r.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "c", FeatureRunID: run})
			})
			sends("UpdateFeatureRunMemories", db.sql.appendMemories.SQL, func(ctx context.Context, r *repository.Repository) error {
				return r.UpdateFeatureRunMemories(ctx, run, []any{1})
			})
			for _, tr := range transitions {
				sends(tr.name, tr.guard(db.sql).SQL, tr.call)
			}
		})
	}
}
