package postgres

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestForeignKeyNamesShardConstraints recognises a foreign-key violation
// as a Citus coordinator relays it from a worker: without the constraint
// field, the message naming the shard's constraint, the foreign key's name
// followed by the child shard's ID.
func TestForeignKeyNamesShardConstraints(t *testing.T) {
	for _, c := range []struct {
		name string
		err  *pgconn.PgError
		want string
		ok   bool
	}{
		{"PostgreSQL", &pgconn.PgError{Code: "23503", ConstraintName: "fk_agent_invocations_phase_result",
			Message: `insert or update on table "agent_invocations" violates foreign key constraint "fk_agent_invocations_phase_result"`},
			"fk_agent_invocations_phase_result", true},
		{"CitusShard", &pgconn.PgError{Code: "23503",
			Message: `insert or update on table "agent_invocations_102977" violates foreign key constraint "fk_agent_invocations_phase_result_102977"`},
			"fk_agent_invocations_phase_result", true},
		{"CitusShardOfNameEndingInDigits", &pgconn.PgError{Code: "23503",
			Message: `insert or update on table "t_2_102977" violates foreign key constraint "fk_t_2_102977"`},
			"fk_t_2", true},
		// A suffix that is not the child shard's is part of the name,
		// which the package cannot tell from another: unnamed.
		{"SuffixOfAnotherShard", &pgconn.PgError{Code: "23503",
			Message: `insert or update on table "agent_invocations_102977" violates foreign key constraint "fk_agent_invocations_phase_result_102976"`},
			"", true},
		{"OtherLanguage", &pgconn.PgError{Code: "23503",
			Message: `Einfügen oder Aktualisieren in Tabelle »agent_invocations_102977« verletzt Fremdschlüssel-Constraint »fk_x_102977«`},
			"", true},
		{"NotAForeignKey", &pgconn.PgError{Code: "23505", Message: `duplicate key value violates unique constraint "x_102977"`}, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Dialect.ForeignKey(nil, fmt.Errorf("insert: %w", c.err))
			if got != c.want || ok != c.ok {
				t.Errorf("ForeignKey(%q) = %q, %v, want %q, %v", c.err.Message, got, ok, c.want, c.ok)
			}
		})
	}
}

// TestRetryOnlyEssentialConnectionFailures retries the one internal error
// Citus raises before any node commits, and no other error of its class.
func TestRetryOnlyEssentialConnectionFailures(t *testing.T) {
	for _, c := range []struct {
		err  *pgconn.PgError
		want bool
	}{
		{&pgconn.PgError{Code: "XX000", Message: "failure on connection marked as essential: 127.0.0.1:9701"}, true},
		{&pgconn.PgError{Code: "XX000", Message: "could not read block 0 in file"}, false},
		{&pgconn.PgError{Code: "08006", Message: "connection to the remote node postgres@127.0.0.1:9701 failed"}, false},
		{&pgconn.PgError{Code: "40P01", Message: "deadlock detected"}, false},
	} {
		if got := Dialect.Retry(fmt.Errorf("insert: %w", c.err)); got != c.want {
			t.Errorf("Retry(%s %q) = %v, want %v", c.err.Code, c.err.Message, got, c.want)
		}
	}
}
