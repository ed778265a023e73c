package latewrites

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/repository"
)

// Site is a migrated database, with its write log, that trials run on.
type Site struct {
	// Repo makes the calls and the later writes, over Pool, whose pool
	// is warmed before each trial.
	Repo *repository.Repository
	Pool *gorm.DB
	// Holder is where the lock holders' transactions run, and the write
	// log is read.
	Holder *gorm.DB
	// Plain prepares and reads the rows: Repo, or a Repository on Holder
	// where Repo's connections go through a proxy.
	Plain *repository.Repository
	// WholeDatabase is whether BEGIN on Holder takes the database's write
	// lock (SQLite), so that the holder takes no row lock.
	WholeDatabase bool
	// Waiters sees the calls blocked; nil where lock waits cannot be
	// seen.
	Waiters *Waiters
	// Stuck is how long after its context ended a call may go on waiting
	// for the lock before the holder frees it anyway: the call is then
	// stuck, returning only once the lock is free.
	Stuck time.Duration
	// MakeRows makes the rows of the trial whose key is key, in their
	// initial state.
	MakeRows func(ctx context.Context, key string) (Rows, error)
}

// Combo is a write, how its context ends and how long after its return
// the lock is freed.
type Combo struct {
	Write, Reason string
	Delay         time.Duration
}

// Trial is one call blocked on a lock: its write, how its context ended
// and how long after the call returned the lock was freed; then what
// happened.
type Trial struct {
	Write  Write
	Reason string
	Delay  time.Duration
	Key    string
	F      Rows

	Err     error
	Checked bool          // whether the trial could see the call blocked (see Waiters)
	Blocked bool          // the call was seen waiting for the holder's lock when its context ended
	Stuck   bool          // the call returned only once the lock was freed
	Lag     time.Duration // from the context's end to the call's return
	Later   error         // of the later write
}

// Combo returns the trial's combo.
func (tr *Trial) Combo() Combo { return Combo{tr.Write.Name, tr.Reason, tr.Delay} }

// NewTrials returns n trials of each write of Writes, reason and delay,
// keyed by prefix, the write, the reason, the delay and their number, and
// the combos in the order of the trials.
func NewTrials(prefix string, n int) (all []*Trial, order []Combo) {
	for _, w := range Writes() {
		for _, reason := range Reasons {
			for _, delay := range Delays {
				order = append(order, Combo{w.Name, reason, delay})
				for i := range n {
					all = append(all, &Trial{Write: w, Reason: reason, Delay: delay,
						Key: fmt.Sprintf("%s%s-%s-%s-%d", prefix, w.Name, reason, delay, i)})
				}
			}
		}
	}
	return all, order
}

// Deal deals trials, in a random order, into n groups, so that every kind
// of trial is in every group.
func Deal(trials []*Trial, n int) [][]*Trial {
	shuffled := append([]*Trial(nil), trials...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	groups := make([][]*Trial, n)
	for i, tr := range shuffled {
		groups[i%n] = append(groups[i%n], tr)
	}
	return groups
}

// Group is trials that run one after another on a site.
type Group struct {
	Site   *Site
	Trials []*Trial
	// Setup, if not nil, runs first, before the rows are made.
	Setup func(ctx context.Context) error
}

// Run runs the groups at once: each makes and prepares the rows of its
// trials, then runs them. It returns the error each group stopped on.
func Run(ctx context.Context, groups []Group) error {
	var wg sync.WaitGroup
	errs := make([]error, len(groups))
	for g, group := range groups {
		s := group.Site
		wg.Go(func() {
			if group.Setup != nil {
				if err := group.Setup(ctx); err != nil {
					errs[g] = err
					return
				}
			}
			for _, tr := range group.Trials {
				f, err := s.MakeRows(ctx, tr.Key)
				if err == nil {
					err = tr.Write.Prepare(ctx, s.Plain, f)
				}
				if err != nil {
					errs[g] = fmt.Errorf("%s: prepare: %w", tr.Key, err)
					return
				}
				tr.F = f
			}
			for _, tr := range group.Trials {
				if err := tr.Run(ctx, s); err != nil {
					errs[g] = fmt.Errorf("%s: %w", tr.Key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run makes the trial on rows made and prepared: it takes the lock, makes
// the call, ends its context, frees the lock Delay after the call returned
// and makes the later write at once.
func (tr *Trial) Run(ctx context.Context, s *Site) error {
	if err := Warm(ctx, s.Pool, 3); err != nil {
		return fmt.Errorf("warm the pool: %w", err)
	}
	lock := tr.Write.Lock
	if s.WholeDatabase {
		lock = "" // BEGIN takes the database's write lock
	}
	tx, err := HoldLock(ctx, s.Holder, lock, tr.Write.LockID(tr.F))
	if err != nil {
		return fmt.Errorf("take the lock: %w", err)
	}
	freed := false
	free := func() error {
		if freed {
			return nil
		}
		freed = true
		return tx.Commit().Error
	}
	defer func() { _ = free() }()
	var seen <-chan struct{}
	tr.Checked = s.Waiters != nil && (s.Waiters.Instant || tr.Reason == "cancel")
	if s.Waiters != nil {
		var holder int64
		if err := tx.Raw(s.Waiters.HolderID).Scan(&holder).Error; err != nil {
			return fmt.Errorf("name the lock holder: %w", err)
		}
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		seen = s.Waiters.Watch(watchCtx, holder)
	}

	var cctx context.Context
	var cancel context.CancelFunc
	start := time.Now()
	ended := start.Add(Deadline)
	if tr.Reason == "deadline" {
		cctx, cancel = context.WithDeadline(ctx, ended)
	} else {
		cctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	// Whether the call was seen blocked when its context ended.
	blocked := make(chan bool, 1)
	go func() {
		<-cctx.Done()
		select {
		case <-seen:
			blocked <- true
		default:
			blocked <- false
		}
	}()
	returned := make(chan error, 1)
	go func() { returned <- tr.Write.Blocked(cctx, s.Repo, tr.F, tr.Key) }()

	done := false
	if tr.Reason == "cancel" {
		at := start.Add(CancelMin + rand.N(CancelMax-CancelMin))
		if seen != nil {
			select {
			case <-seen:
			case tr.Err = <-returned:
				done = true
			case <-time.After(s.Stuck):
			}
		}
		if !done {
			select {
			case <-time.After(time.Until(at)):
			case tr.Err = <-returned:
				done = true
			}
		}
		ended = time.Now()
		cancel()
	}
	if !done {
		select {
		case tr.Err = <-returned:
		case <-time.After(time.Until(ended) + s.Stuck):
			// The call waits on: free the lock so that it can return.
			tr.Stuck = true
			if err := free(); err != nil {
				return fmt.Errorf("free the lock: %w", err)
			}
			tr.Err = <-returned
		}
	}
	tr.Lag = time.Since(ended)
	cancel()
	tr.Blocked = <-blocked

	time.Sleep(tr.Delay)
	if err := free(); err != nil {
		return fmt.Errorf("free the lock: %w", err)
	}
	tr.Later = tr.Write.Later(ctx, s.Repo, tr.F, tr.Key)
	return nil
}

// Expected is the mark of what the trial's row must hold at the end: the
// later write's, unless the call returned nil, so that its write committed
// before the later one, and the later write keeps it.
func (tr *Trial) Expected() string {
	if tr.Err == nil && tr.Write.FirstWins {
		return tr.Write.BlockedMark(tr.F, tr.Key)
	}
	return tr.Write.LaterMark(tr.F, tr.Key)
}
