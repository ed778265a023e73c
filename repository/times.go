package repository

import (
	"time"

	"github.com/agentpipeline/persistence/models"
)

// ceilMicro rounds t up to the microsecond, the precision every supported
// database stores. A stored time x, a whole number of microseconds, is at
// or after t exactly when it is at or after ceilMicro(t), and before t
// exactly when it is before ceilMicro(t), so comparing with it gives every
// database the answer the exact comparison gives.
func ceilMicro(t time.Time) time.Time {
	down := t.Truncate(time.Microsecond)
	if down.Equal(t) {
		return down
	}
	return down.Add(time.Microsecond)
}

// inUTC puts the times of the rows in dest, a pointer to a slice of
// models, in UTC. Drivers differ: pgx returns PostgreSQL's times in
// time.Local, the SQLite driver in UTC; getters return UTC on every
// database, so the same row reads back equal everywhere.
func inUTC(dest any) {
	switch rows := dest.(type) {
	case *[]models.FeatureRun:
		for i := range *rows {
			r := &(*rows)[i]
			utc(&r.CreatedAt, &r.UpdatedAt, r.CompletedAt)
		}
	case *[]models.Sandbox:
		for i := range *rows {
			r := &(*rows)[i]
			utc(&r.CreatedAt, &r.UpdatedAt, r.StartedAt, r.StoppedAt)
		}
	case *[]models.PhaseResult:
		for i := range *rows {
			r := &(*rows)[i]
			utc(&r.CreatedAt, &r.UpdatedAt, r.FinishedAt)
		}
	case *[]models.AgentInvocation:
		for i := range *rows {
			r := &(*rows)[i]
			utc(&r.CreatedAt, &r.UpdatedAt, r.FinishedAt, r.StartedAt)
		}
	case *[]models.CTAEvent:
		for i := range *rows {
			r := &(*rows)[i]
			utc(&r.CreatedAt, &r.UpdatedAt, r.ExpiresAt, r.ResolvedAt)
		}
	}
}

// utc puts each time that is set in UTC.
func utc(ts ...*time.Time) {
	for _, t := range ts {
		if t != nil {
			*t = t.UTC()
		}
	}
}
