package runview_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/agentpipeline/persistence/internal/dbtest"
	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
	"github.com/agentpipeline/persistence/runview"
)

// Secrets the fixture stores where the viewer hides values by default.
const (
	ctaSecret     = "hunter2-cta-password"
	runSecret     = "run-secret-api-key"
	sandboxSecret = "sandbox-secret-token"
)

// Hostile values the fixture stores where the viewer shows them.
const (
	scriptOutput = `<script>alert("xss")</script><img src=x onerror=alert(1)>`
	jsURL        = `javascript:alert(document.cookie)`
)

// fixture names what seed wrote.
type fixture struct {
	done, live, failed uuid.UUID
	// planner ran in done and wrote scriptOutput; stuck never finished;
	// deep is a sub-agent two levels under coder.
	planner, coder, deep, stuck uuid.UUID
	// other is an invocation of live.
	other uuid.UUID
}

// seed records three runs: done, completed, with phases, nested
// sub-agents, an invocation that never finished, answered and pending
// CTA events and a sandbox left running; live, running, in a phase named
// like a javascript: URL; and failed.
func seed(t testing.TB, repo *repository.Repository) fixture {
	t.Helper()
	ctx := context.Background()
	var f fixture
	var err error
	check := func(err error) {
		t.Helper()
		require.NoError(t, err)
	}
	f.done, err = repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan", Metadata: map[string]any{"api_key": runSecret, "ticket": "FEAT-1"}})
	check(err)
	check(repo.UpdateFeatureRunMemories(ctx, f.done, []any{"uses Go modules", map[string]any{"link": jsURL}}))
	plan, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: f.done, Phase: "plan"})
	check(err)
	started := time.Now().UTC().Add(-time.Minute)
	f.planner, err = repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
		FeatureRunID: f.done, PhaseResultID: &plan, Agent: "planner", Model: "claude-opus-4", Provider: "anthropic",
		StartedAt: &started, Input: map[string]any{"prompt": "plan the feature", "see": jsURL},
	})
	check(err)
	check(repo.CompleteAgentInvocation(ctx, f.planner, repository.InvocationResult{
		Output: scriptOutput, Steps: []any{"read", "think"}, ToolCalls: []any{map[string]any{"tool": "open", "url": jsURL}},
		InputTokens: 2000, CacheReadInputTokens: 500, OutputTokens: 340, CostNanoUSD: 67_500_000, FinishReason: "end_turn",
	}))
	check(repo.PassPhaseResult(ctx, plan, map[string]any{"steps": 3}))
	check(repo.UpdateFeatureRunPhase(ctx, f.done, "implement"))
	impl, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: f.done, Phase: "implement"})
	check(err)
	f.coder, err = repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: f.done, PhaseResultID: &impl, Agent: "coder", Model: "claude-sonnet-4"})
	check(err)
	research, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: f.done, ParentInvocationID: &f.coder, Agent: "researcher", Model: "claude-haiku-4"})
	check(err)
	f.deep, err = repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: f.done, ParentInvocationID: &research, Agent: "fetcher", Model: "claude-haiku-4"})
	check(err)
	check(repo.CompleteAgentInvocation(ctx, f.deep, repository.InvocationResult{Output: "fetched", InputTokens: 100, OutputTokens: 10, CostNanoUSD: 1000}))
	check(repo.CompleteAgentInvocation(ctx, research, repository.InvocationResult{Output: "found", InputTokens: 1200, OutputTokens: 550, CostNanoUSD: 1_336_000}))
	check(repo.CompleteAgentInvocation(ctx, f.coder, repository.InvocationResult{Output: "diff", InputTokens: 6000, OutputTokens: 1300, CostNanoUSD: 50_100_000}))
	f.stuck, err = repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: f.done, PhaseResultID: &impl, Agent: "linter", Model: "claude-haiku-4"})
	check(err)
	tester, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: f.done, PhaseResultID: &impl, Agent: "tester", Model: "claude-haiku-4"})
	check(err)
	check(repo.FailAgentInvocation(ctx, tester, repository.InvocationResult{InputTokens: 2900, CostNanoUSD: 3_280_000}, "go test: <b>FAIL</b>"))
	check(repo.PassPhaseResult(ctx, impl, nil))
	check(repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "approve-plan", FeatureRunID: f.done, Kind: "approval", RequestData: map[string]any{"plan": "3 steps"}, ExpiresAt: time.Now().Add(time.Hour)}))
	check(repo.CompleteCTAEvent(ctx, "approve-plan", map[string]any{"approved": true, "password": ctaSecret}))
	check(repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "confirm-<i>deploy</i>", FeatureRunID: f.done, Kind: "confirmation", ExpiresAt: time.Now().Add(30 * time.Minute)}))
	check(repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "sbx-1", FeatureRunID: f.done, Provider: "e2b", Metadata: map[string]any{"token": sandboxSecret}}))
	check(repo.UpdateSandboxStatus(ctx, "sbx-1", models.SandboxRunning))
	check(repo.CompleteFeatureRun(ctx, f.done))

	f.live, err = repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: jsURL})
	check(err)
	f.other, err = repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: f.live, Agent: "planner", Model: "m"})
	check(err)
	check(repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "no-deadline", FeatureRunID: f.live, Kind: "question"}))

	f.failed, err = repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "review"})
	check(err)
	check(repo.FailFeatureRunWithError(ctx, f.failed, "<script>boom</script>"))
	return f
}

// open opens a fresh database of d, migrated and seeded.
func open(t testing.TB, d dbtest.Database) (*gorm.DB, *repository.Repository, fixture) {
	t.Helper()
	db := d.Open(t)
	require.NoError(t, migrate.Up(t.Context(), db))
	repo := repository.New(db)
	return db, repo, seed(t, repo)
}

// get serves one request and returns the response, with its body read.
func get(t testing.TB, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(b)
}

// assertHeaders checks the security headers every answer carries.
func assertHeaders(t testing.TB, res *http.Response, what string) {
	t.Helper()
	csp := res.Header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "style-src 'self'", "img-src 'self' data:", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		assert.Contains(t, csp, d, what)
	}
	assert.NotContains(t, csp, "script-src", "%s: no script is shipped", what)
	assert.NotContains(t, csp, "unsafe", what)
	assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"), what)
	assert.Equal(t, "no-referrer", res.Header.Get("Referrer-Policy"), what)
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"), what)
}

// TestPagesAndStatusCodes serves every page and every error on every
// database, each with the security headers.
func TestPagesAndStatusCodes(t *testing.T) {
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			_, repo, f := open(t, d)
			h := runview.New(repo, runview.Options{})
			done, live := f.done.String(), f.live.String()
			for _, c := range []struct {
				method, target string
				code           int
				contains       []string
			}{
				{"GET", "/", 200, []string{done[:8], live[:8], `href="runs/` + done + `"`, "All <span class=\"count\">3</span>", "completed <span class=\"count\">1</span>", "Pending CTAs"}},
				{"HEAD", "/", 200, nil},
				{"GET", "/?status=completed", 200, []string{done[:8]}},
				{"GET", "/?status=completed&status=failed&phase=plan", 200, []string{"No runs match"}},
				{"GET", "/?phase=implement", 200, []string{done[:8]}},
				{"GET", "/?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z", 200, []string{done[:8]}},
				{"GET", "/runs/" + done, 200, []string{"<svg", "<rect class=\"bar", "planner", "researcher", "fetcher", "approve-plan", "sbx-1", "uses Go modules", "Usage", "nest 2 deep"}},
				{"GET", "/runs/" + live, 200, []string{`<meta http-equiv="refresh" content="5">`}},
				{"GET", "/runs/" + done + "/invocations/" + f.planner.String(), 200, []string{"claude-opus-4", "end_turn", "67,500,000"[:0] + "0.067500000"}},
				{"GET", "/runs/" + done + "/invocations/" + f.stuck.String(), 200, []string{"linter"}},
				{"GET", "/cta", 200, []string{"confirm-", "no-deadline"}},
				{"GET", "/cta?status=completed", 200, []string{"approve-plan"}},
				{"GET", "/cta?status=timed_out", 200, []string{"None."}},
				{"GET", "/sandboxes/leaked", 200, []string{"sbx-1"}},
				{"GET", "/sandboxes/leaked?older=90m", 200, []string{"sbx-1", "1h30m"}},
				{"GET", "/static/runview.css", 200, []string{".wf"}},

				{"GET", "/runs/" + uuid.NewString(), 404, nil},
				{"GET", "/runs/" + done + "/invocations/" + uuid.NewString(), 404, nil},
				{"GET", "/runs/" + done + "/invocations/" + f.other.String(), 404, nil},
				{"GET", "/runs/" + uuid.NewString() + "/invocations/" + f.planner.String(), 404, nil},
				{"GET", "/nowhere", 404, nil},
				{"GET", "/runs/", 404, nil},
				{"GET", "/runs/" + done + "/extra", 404, nil},

				{"GET", "/runs/not-a-uuid", 400, []string{"malformed run ID"}},
				{"GET", "/runs/" + done + "/invocations/nope", 400, []string{"malformed invocation ID"}},
				{"GET", "/runs/nope/invocations/" + f.planner.String(), 400, nil},
				{"GET", "/?after=not-a-cursor", 400, []string{"Page.After"}},
				{"GET", "/?phase=implement&after=AAAA", 400, nil},
				{"GET", "/?from=yesterday", 400, []string{"from"}},
				{"GET", "/?to=2025-13-01T00:00:00Z", 400, []string{"to"}},
				{"GET", "/?status=lost", 400, []string{"status"}},
				{"GET", "/?phase=a%00b", 400, nil},
				{"GET", "/cta?after=%25%25", 400, nil},
				{"GET", "/cta?status=lost", 400, nil},
				{"GET", "/sandboxes/leaked?older=-1h", 400, []string{"older"}},
				{"GET", "/sandboxes/leaked?older=soon", 400, nil},

				{"POST", "/", 405, nil},
				{"PUT", "/runs/" + done, 405, nil},
				{"DELETE", "/runs/" + done, 405, nil},
				{"PATCH", "/cta", 405, nil},
				{"OPTIONS", "/", 405, nil},
				{"POST", "/nowhere", 405, nil},
			} {
				what := c.method + " " + c.target
				res, body := get(t, h, c.method, c.target)
				assert.Equal(t, c.code, res.StatusCode, "%s: %s", what, body)
				assertHeaders(t, res, what)
				for _, s := range c.contains {
					if !strings.Contains(body, s) {
						t.Errorf("%s: no %q in the page", what, s)
					}
				}
				switch {
				case c.code == 405:
					assert.Equal(t, "GET, HEAD", res.Header.Get("Allow"), what)
				case c.code >= 400:
					assert.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain"), "%s: a plain message", what)
					assert.NotContains(t, body, "<", "%s: a plain message", what)
				case strings.HasSuffix(c.target, ".css"):
					assert.Equal(t, "text/css; charset=utf-8", res.Header.Get("Content-Type"))
				default:
					assert.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"), what)
				}
			}
			_, body := get(t, h, "GET", "/runs/"+done)
			assert.NotContains(t, body, `http-equiv="refresh"`, "a finished run does not reload")
		})
	}
}

var links = regexp.MustCompile(`(?:href|src)="([^"]*)"`)

// crawl follows every link of the pages under base, from start, on srv,
// and returns each page's body by its URL. It fails t on any answer but
// 200 and on a link that leaves base.
func crawl(t *testing.T, client *http.Client, base, start string) map[string]string {
	t.Helper()
	seen := map[string]string{}
	queue := []string{start}
	for len(queue) > 0 && len(seen) < 2000 {
		u := queue[0]
		queue = queue[1:]
		if _, ok := seen[u]; ok {
			continue
		}
		res, err := client.Get(u)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode, "%s: %s", u, b)
		assertHeaders(t, res, u)
		seen[u] = string(b)
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			continue
		}
		from, err := url.Parse(u)
		require.NoError(t, err)
		for _, m := range links.FindAllStringSubmatch(string(b), -1) {
			href := html.UnescapeString(m[1])
			if strings.HasPrefix(href, "data:") {
				continue
			}
			ref, err := url.Parse(href)
			require.NoError(t, err, href)
			to := from.ResolveReference(ref)
			to.Fragment = ""
			require.True(t, strings.HasPrefix(to.String(), base), "%s links out of the viewer to %s", u, to)
			queue = append(queue, to.String())
		}
	}
	require.Less(t, len(seen), 2000, "the crawl ends")
	return seen
}

// tables reads every row of the pipeline's tables.
func tables(t *testing.T, db *gorm.DB) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, table := range []string{"feature_runs", "sandboxes", "phase_results", "agent_invocations", "cta_events"} {
		out[table] = dbtest.Rows(t, db, table)
	}
	return out
}

// TestCrawlIsReadOnlyAndSafe follows every link of the viewer, mounted
// under a prefix with http.StripPrefix as the README shows, on every
// database: every page answers 200 with the headers, every link stays
// under the prefix, the tables are unchanged, no secret is shown, and
// every hostile value is shown as text.
func TestCrawlIsReadOnlyAndSafe(t *testing.T) {
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			db, repo, f := open(t, d)
			before := tables(t, db)
			mux := http.NewServeMux()
			mux.Handle("/admin/runs/", http.StripPrefix("/admin/runs", runview.New(repo, runview.Options{})))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			base := srv.URL + "/admin/runs/"
			pages := crawl(t, srv.Client(), base, base)
			for _, want := range []string{"", "runs/" + f.done.String(), "runs/" + f.done.String() + "/invocations/" + f.planner.String(),
				"runs/" + f.done.String() + "/invocations/" + f.deep.String(), "cta", "sandboxes/leaked", "static/runview.css"} {
				assert.Contains(t, pages, base+want, "the crawl reaches it")
			}
			assert.Equal(t, before, tables(t, db), "the tables are byte for byte as they were")

			var all strings.Builder
			for u, body := range pages {
				for _, secret := range []string{ctaSecret, runSecret, sandboxSecret} {
					assert.NotContains(t, body, secret, "%s shows a secret", u)
				}
				lower := strings.ToLower(body)
				assert.NotContains(t, lower, "<script", u)
				assert.NotContains(t, lower, "<img", u)
				assert.NotRegexp(t, `(?i)<[^>]*\bon[a-z]+=`, body, "%s: an event handler in a tag", u)
				assert.NotRegexp(t, `(?i)(href|src)="\s*javascript:`, body, u)
				assert.NotContains(t, body, "<b>", u)
				assert.NotContains(t, body, "<i>", u)
				all.WriteString(body)
			}
			// The hostile values are there, as text.
			for _, s := range []string{
				// In a JSON string, its quotes escaped by JSON, then HTML.
				`&lt;script&gt;alert(\&#34;xss\&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;`,
				`&lt;script&gt;boom&lt;/script&gt;`,
				`go test: &lt;b&gt;FAIL&lt;/b&gt;`,
				`confirm-&lt;i&gt;deploy&lt;/i&gt;`,
				`javascript:alert(document.cookie)`,
				"hidden (",
			} {
				assert.Contains(t, all.String(), s)
			}
		})
	}
}

// TestSecrets shows the hidden values when the options reveal them, and
// what the hook returns when it redacts them.
func TestSecrets(t *testing.T) {
	_, repo, f := open(t, dbtest.All()[0])
	pages := func(opts runview.Options) string {
		var b strings.Builder
		for _, p := range []string{"/runs/" + f.done.String(), "/cta?status=completed", "/sandboxes/leaked"} {
			res, body := get(t, runview.New(repo, opts), "GET", p)
			require.Equal(t, 200, res.StatusCode)
			b.WriteString(body)
		}
		return b.String()
	}
	hidden := pages(runview.Options{})
	for _, s := range []string{ctaSecret, runSecret, sandboxSecret} {
		assert.NotContains(t, hidden, s)
	}
	assert.Regexp(t, `hidden \(\d+ bytes\)`, hidden, "the size shows")

	shown := pages(runview.Options{RevealSecrets: true})
	for _, s := range []string{ctaSecret, runSecret, sandboxSecret} {
		assert.Contains(t, shown, s)
	}

	var columns []string
	redacted := pages(runview.Options{RevealSecrets: true, Redact: func(column string, value []byte) []byte {
		columns = append(columns, column)
		if column == runview.SandboxMetadata {
			return nil // hidden
		}
		return bytes.ReplaceAll(bytes.ReplaceAll(value, []byte(ctaSecret), []byte(`<redacted>`)), []byte(runSecret), []byte("[redacted]"))
	}})
	for _, s := range []string{ctaSecret, runSecret, sandboxSecret} {
		assert.NotContains(t, redacted, s)
	}
	assert.Contains(t, redacted, "&lt;redacted&gt;", "a hook's output is escaped")
	assert.Contains(t, redacted, "FEAT-1", "the rest of the value shows")
	assert.ElementsMatch(t, []string{runview.RunMetadata, runview.CTAResponse, runview.SandboxMetadata, runview.CTAResponse, runview.SandboxMetadata}, columns)
}

// TestPayloadsAreCut cuts payloads at Options.MaxPayloadBytes, saying how
// much was left out.
func TestPayloadsAreCut(t *testing.T) {
	ctx := t.Context()
	db := dbtest.SQLite(t)
	require.NoError(t, migrate.Up(ctx, db))
	repo := repository.New(db)
	run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
	require.NoError(t, err)
	long := strings.Repeat("é", 3000) // 6,000 bytes
	inv, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, Agent: "a", Model: "m", Input: long})
	require.NoError(t, err)
	res, body := get(t, runview.New(repo, runview.Options{MaxPayloadBytes: 1001}), "GET", "/runs/"+run.String()+"/invocations/"+inv.String())
	require.Equal(t, 200, res.StatusCode)
	assert.Contains(t, body, `&#34;`+strings.Repeat("é", 500)+"</pre>", "cut at 1,001 bytes, backed off to a character")
	assert.Contains(t, body, "4.9 KiB more not shown, of 5.9 KiB")
	_, body = get(t, runview.New(repo, runview.Options{}), "GET", "/runs/"+run.String()+"/invocations/"+inv.String())
	assert.Contains(t, body, long, "16 KiB by default")
}

// TestDeepSubAgents draws a chain of 20,000 sub-agents, iteratively: no
// depth crashes the page.
func TestDeepSubAgents(t *testing.T) {
	ctx := t.Context()
	db := dbtest.SQLite(t)
	require.NoError(t, migrate.Up(ctx, db))
	repo := repository.New(db)
	run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan"})
	require.NoError(t, err)
	const depth = 20_000
	require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
		r := repository.New(tx)
		var parent *uuid.UUID
		for range depth {
			id, err := r.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: run, ParentInvocationID: parent, Agent: "sub", Model: "m"})
			if err != nil {
				return err
			}
			parent = &id
		}
		return nil
	}))
	res, body := get(t, runview.New(repo, runview.Options{}), "GET", "/runs/"+run.String())
	require.Equal(t, 200, res.StatusCode)
	assert.Contains(t, body, fmt.Sprintf("depth %d", depth-1))
	assert.Contains(t, body, fmt.Sprintf("sub-agents nest %d deep", depth-1))
	assert.Equal(t, depth, strings.Count(body, `class="k-invocation"`))
}

// TestDatabaseErrorsAreLoggedNotShown closes the database under the
// handler: every page answers 500 with a plain message, and the error
// goes to the logger.
func TestDatabaseErrorsAreLoggedNotShown(t *testing.T) {
	for _, d := range dbtest.All() {
		t.Run(d.Name, func(t *testing.T) {
			db, repo, f := open(t, d)
			var log bytes.Buffer
			h := runview.New(repo, runview.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
			sqlDB, err := db.DB()
			require.NoError(t, err)
			require.NoError(t, sqlDB.Close())
			for _, p := range []string{"/", "/runs/" + f.done.String(), "/runs/" + f.done.String() + "/invocations/" + f.planner.String(), "/cta", "/sandboxes/leaked"} {
				log.Reset()
				res, body := get(t, h, "GET", p)
				assert.Equal(t, 500, res.StatusCode, p)
				assertHeaders(t, res, p)
				assert.NotContains(t, body, "closed", p)
				assert.Contains(t, body, "see the server's log", p)
				assert.Contains(t, log.String(), "database is closed", p)
				assert.Contains(t, log.String(), "path="+p, p)
			}
		})
	}
}
