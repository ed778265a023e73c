// Package runview is a read-only web viewer of the runs a
// [repository.Repository] records: a list of runs with counts per status,
// a waterfall of each run drawn to scale, every field of an agent
// invocation, the CTA events waiting for a person and the sandboxes left
// running.
//
// [New] returns an [http.Handler] to mount into your own server, under any
// prefix, with [http.StripPrefix]:
//
//	mux.Handle("/runs/", requireAdmin(http.StripPrefix("/runs", runview.New(repo, runview.Options{}))))
//
// The handler has no authentication of its own: mount it behind your
// application's. It only reads, through the Repository's reads (which may
// go to a read replica), starts no goroutine, and needs nothing but its
// embedded templates and stylesheet: no JavaScript, nothing loaded from
// another origin. Values that may hold secrets (CTA answers, run and
// sandbox metadata) are hidden unless [Options] says otherwise, payloads
// are cut at [Options.MaxPayloadBytes], and every page is sent with a
// strict Content-Security-Policy.
package runview

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/agentpipeline/persistence/repository"
)

// The values [Options.Redact] is given, named by their table and column.
const (
	// CTAResponse is a person's answer to a CTA event
	// (models.CTAEvent.ResponseData).
	CTAResponse = "cta_events.response_data"
	// RunMetadata is a run's metadata (models.FeatureRun.Metadata).
	RunMetadata = "feature_runs.metadata"
	// SandboxMetadata is a sandbox's metadata (models.Sandbox.Metadata).
	SandboxMetadata = "sandboxes.metadata"
)

// Defaults of [Options].
const (
	DefaultMaxPayloadBytes = 16 << 10
	DefaultPageSize        = 50
	DefaultCountLimit      = 1_000
	DefaultRefresh         = 5 * time.Second
	DefaultSilentAfter     = time.Hour
)

// Options configures the handler [New] returns. Its zero value is the
// safe default: secrets hidden, payloads cut at 16 KiB.
type Options struct {
	// Logger receives the errors of the database, which pages never
	// show (they answer 500 with a plain message). Nil means
	// [slog.Default].
	Logger *slog.Logger

	// RevealSecrets shows the values that may hold secrets
	// ([CTAResponse], [RunMetadata], [SandboxMetadata]) as stored. By
	// default each is hidden, and only its size shown.
	RevealSecrets bool
	// Redact, if set, is called with each value that may hold secrets
	// and the name of its column ([CTAResponse], [RunMetadata] or
	// [SandboxMetadata]), and what it returns is shown instead, escaped
	// and cut like any payload: nil hides the value, as by default. It
	// takes precedence over RevealSecrets. It is called while a page is
	// rendered, on the request's goroutine.
	Redact func(column string, value []byte) []byte

	// MaxPayloadBytes is the most bytes of a JSON payload or an error
	// message a page shows; the rest is cut, with a note saying how much.
	// 0 means [DefaultMaxPayloadBytes].
	MaxPayloadBytes int
	// PageSize is the number of runs, or CTA events, on a page: 1 to
	// [repository.MaxPageLimit]. 0 means [DefaultPageSize].
	PageSize int
	// CountLimit is where the counts of the status tabs stop ("1,000+"):
	// each count reads at most this many index entries. 0 means
	// [DefaultCountLimit]; at most [repository.MaxCountLimit].
	CountLimit int
	// Refresh is how often the page of a running run reloads itself (with
	// <meta http-equiv="refresh">). 0 means [DefaultRefresh]; a negative
	// value turns it off.
	Refresh time.Duration
	// SilentAfter is how long a running run may record nothing before
	// the viewer calls it silent: its waterfall then ends at its last
	// record rather than now, and it stops refreshing. 0 means
	// [DefaultSilentAfter].
	SilentAfter time.Duration
	// Now is the clock pages are drawn at. Nil means [time.Now].
	Now func() time.Time
}

// contentSecurityPolicy allows the page its own stylesheet and nothing
// else: no script, no frame, no form, no base.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static/runview.css
var stylesheet []byte

// handler serves the viewer's pages.
type handler struct {
	repo  *repository.Repository
	opts  Options
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New returns a handler that serves the viewer over repo's reads. It only
// reads: it calls no method of repo that writes.
//
// Paths are relative to where it is mounted, and so are its links, so it
// works under any prefix [http.StripPrefix] removes; mount it with a
// trailing slash ("/admin/runs/"), whose stripped path is "/":
//
//   - GET / lists runs, newest first, with tabs counting each status.
//     Parameters: status (repeatable), phase, from and to (RFC 3339,
//     on the creation time) and after (the cursor of the next page).
//   - GET /runs/{id} draws a run's waterfall, its usage, memories and
//     metadata.
//   - GET /runs/{id}/invocations/{inv} shows every field of one agent
//     invocation of the run, with its JSON payloads.
//   - GET /cta lists pending CTA events across runs, soonest deadline
//     first (status and after as on the list).
//   - GET /sandboxes/leaked lists [repository.Repository.LeakedSandboxes],
//     with an older parameter (a Go duration, default 1h).
//
// An unknown run or invocation, or an invocation of another run, is 404;
// a malformed ID, cursor, time or duration is 400 with a plain message;
// any method but GET and HEAD is 405.
func New(repo *repository.Repository, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxPayloadBytes <= 0 {
		opts.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if opts.PageSize <= 0 || opts.PageSize > repository.MaxPageLimit {
		opts.PageSize = DefaultPageSize
	}
	if opts.CountLimit <= 0 || opts.CountLimit > repository.MaxCountLimit {
		opts.CountLimit = DefaultCountLimit
	}
	if opts.Refresh == 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.SilentAfter <= 0 {
		opts.SilentAfter = DefaultSilentAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &handler{repo: repo, opts: opts, pages: parsePages(), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.list)
	h.mux.HandleFunc("GET /runs/{id}", h.run)
	h.mux.HandleFunc("GET /runs/{id}/invocations/{inv}", h.invocation)
	h.mux.HandleFunc("GET /cta", h.cta)
	h.mux.HandleFunc("GET /sandboxes/leaked", h.leaked)
	h.mux.HandleFunc("GET /static/runview.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		_, _ = w.Write(stylesheet) // a client that left reads nothing

	})
	h.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	return h
}

// ServeHTTP sets the security headers on every answer, refuses methods
// but GET and HEAD, and routes the rest.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the viewer only reads", http.StatusMethodNotAllowed)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// root returns the relative path from the page at path back to the
// handler's root, ending in a slash: "./" for "/", "../" for "/runs/x".
func root(path string) string {
	n := strings.Count(path, "/") - 1
	if n <= 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}

// badRequest answers 400 with a plain message.
func badRequest(w http.ResponseWriter, msg string) {
	http.Error(w, "bad request: "+msg, http.StatusBadRequest)
}

// fail answers a read that failed: 404 for what is not there, 400 for
// input the repository refused, and otherwise 500, with the error logged
// and not shown.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	var input *repository.InputError
	switch {
	case errors.Is(err, repository.ErrNotFound):
		http.Error(w, what+" not found", http.StatusNotFound)
	case errors.As(err, &input):
		badRequest(w, input.Field+": "+input.Reason)
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client left; nobody reads the answer.
	default:
		h.opts.Logger.ErrorContext(r.Context(), "runview: read failed", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error: the viewer could not read the database (see the server's log)", http.StatusInternalServerError)
	}
}

// render executes the page template name with data, into a buffer first
// so that an error leaves no half page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, name string, data any) {
	var b strings.Builder
	if err := h.pages[name].ExecuteTemplate(&b, "layout", data); err != nil {
		h.opts.Logger.ErrorContext(r.Context(), "runview: render failed", "path", r.URL.Path, "err", err)
		http.Error(w, "internal error: the page could not be drawn (see the server's log)", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, b.String()) // a client that left reads nothing
}
