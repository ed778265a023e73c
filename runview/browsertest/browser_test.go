package browsertest

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/agentpipeline/persistence/migrate"
	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
	"github.com/agentpipeline/persistence/runview"
)

var update = flag.Bool("update", false, "write the run page's screenshot to docs/runview.png")

// hostile is what an agent answered: it must show as text.
const hostile = `<script>alert("xss")</script><img src=x onerror=alert(1)> see javascript:alert(2)`

// chromium returns the path of Debian's chromium, or skips the test with
// one line; under CI it fails instead, as .ci/run installs chromium.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found: CI must install it (apt-get install chromium)")
	}
	t.Skip("chromium not found: apt-get install chromium to run the browser test")
	return ""
}

// clock is the database's clock, moved by hand so that the seeded run
// spans minutes as a real one does.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// seed records a finished feature run of four phases over seven minutes,
// with sub-agents, a failed test and its retry, a person's approval, a
// sandbox's lifecycle and an agent output holding markup, plus a few other
// runs for the list. It returns the run and the invocation with the
// markup.
func seed(t *testing.T, ctx context.Context, repo *repository.Repository, clk *clock, start time.Time) (uuid.UUID, uuid.UUID) {
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Other runs, older, for the list.
	for i, st := range []models.RunStatus{models.RunCompleted, models.RunFailed, models.RunCompleted, models.RunRunning} {
		clk.set(at(-3600 * float64(4-i)))
		id, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: []string{"review", "test", "review", "implement"}[i]})
		must(err)
		inv, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{FeatureRunID: id, Agent: "planner", Model: "claude-opus-4"})
		must(err)
		clk.set(at(-3600*float64(4-i) + 300))
		must(repo.CompleteAgentInvocation(ctx, inv, repository.InvocationResult{InputTokens: int64(1000 * (i + 1)), OutputTokens: 300, CostNanoUSD: int64(20_000_000 * (i + 1))}))
		switch st {
		case models.RunCompleted:
			must(repo.CompleteFeatureRun(ctx, id))
		case models.RunFailed:
			must(repo.FailFeatureRunWithError(ctx, id, "tests failed 3 times"))
		}
	}

	clk.set(at(0))
	run, err := repo.CreateFeatureRun(ctx, repository.NewFeatureRun{Phase: "plan", Metadata: map[string]any{"ticket": "FEAT-142", "api_key": "sk-live-secret"}})
	must(err)
	phase := func(name string, from float64) uuid.UUID {
		clk.set(at(from))
		must(repo.UpdateFeatureRunPhase(ctx, run, name))
		id, err := repo.CreatePhaseResult(ctx, repository.NewPhaseResult{FeatureRunID: run, Phase: name})
		must(err)
		return id
	}
	type call struct {
		agent, model  string
		from, to      float64
		in, out       int64
		cacheRead     int64
		cost          int64
		output        any
		failed        string
		parent, phase *uuid.UUID
	}
	invoke := func(c call) uuid.UUID {
		clk.set(at(c.from))
		started := at(c.from)
		id, err := repo.CreateAgentInvocation(ctx, repository.NewAgentInvocation{
			FeatureRunID: run, PhaseResultID: c.phase, ParentInvocationID: c.parent, Agent: c.agent, Model: c.model,
			Provider: "anthropic", StartedAt: &started, Input: map[string]any{"task": c.agent + " the feature"},
		})
		must(err)
		return id
	}
	finish := func(id uuid.UUID, c call) {
		clk.set(at(c.to))
		res := repository.InvocationResult{Output: c.output, InputTokens: c.in, OutputTokens: c.out, CacheReadInputTokens: c.cacheRead, CostNanoUSD: c.cost, FinishReason: "end_turn"}
		if c.failed != "" {
			must(repo.FailAgentInvocation(ctx, id, res, c.failed))
			return
		}
		must(repo.CompleteAgentInvocation(ctx, id, res))
	}
	do := func(c call) uuid.UUID { id := invoke(c); finish(id, c); return id }

	plan := phase("plan", 0.2)
	do(call{agent: "planner", model: "claude-opus-4", from: 1, to: 38, in: 1800, out: 540, cost: 67_500_000, output: "3 steps", phase: &plan})
	clk.set(at(40))
	must(repo.CreateCTAEvent(ctx, repository.NewCTAEvent{ID: "approve-plan", FeatureRunID: run, Kind: "approval", RequestData: map[string]any{"plan": "3 steps"}, ExpiresAt: at(40 + 600)}))
	clk.set(at(95))
	must(repo.CompleteCTAEvent(ctx, "approve-plan", map[string]any{"approved": true, "by": "ana", "password": "hunter2"}))
	clk.set(at(41))
	must(repo.PassPhaseResult(ctx, plan, map[string]any{"steps": 3}))

	clk.set(at(96))
	must(repo.CreateSandboxRecord(ctx, repository.NewSandbox{ID: "sbx-7f3a", FeatureRunID: run, Provider: "e2b", Metadata: map[string]any{"token": "e2b-secret"}}))
	clk.set(at(99))
	must(repo.UpdateSandboxStatus(ctx, "sbx-7f3a", models.SandboxRunning))

	impl := phase("implement", 100)
	coder := call{agent: "coder", model: "claude-sonnet-4", from: 101, to: 282, in: 9100, out: 3300, cacheRead: 3000, cost: 71_700_000, output: "diff --git …", phase: &impl}
	coderID := invoke(coder)
	research := call{agent: "researcher", model: "claude-haiku-4", from: 110, to: 171, in: 1500, out: 250, cacheRead: 1200, cost: 1_336_000, output: "found the API", parent: &coderID}
	researchID := invoke(research)
	do(call{agent: "fetcher", model: "claude-haiku-4", from: 115, to: 140, in: 400, out: 90, cost: 310_000, output: "docs fetched", parent: &researchID})
	do(call{agent: "fetcher", model: "claude-haiku-4", from: 142, to: 166, in: 380, out: 70, cost: 290_000, output: "examples fetched", parent: &researchID})
	finish(researchID, research)
	finish(coderID, coder)
	clk.set(at(284))
	must(repo.PassPhaseResult(ctx, impl, nil))

	test := phase("test", 290)
	do(call{agent: "tester", model: "claude-haiku-4", from: 291, to: 331, in: 2900, out: 360, cost: 3_280_000, failed: "test runner timed out", phase: &test})
	do(call{agent: "tester", model: "claude-haiku-4", from: 333, to: 371, in: 2400, out: 360, cost: 3_840_000, output: "ok", phase: &test})
	clk.set(at(372))
	must(repo.PassPhaseResult(ctx, test, nil))

	review := phase("review", 375)
	reviewer := do(call{agent: "reviewer", model: "claude-opus-4", from: 376, to: 425, in: 4100, out: 760, cost: 118_500_000, output: hostile, phase: &review})
	clk.set(at(426))
	must(repo.PassPhaseResult(ctx, review, nil))
	clk.set(at(428))
	must(repo.UpdateSandboxStatus(ctx, "sbx-7f3a", models.SandboxStopped))
	must(repo.UpdateFeatureRunMemories(ctx, run, []any{"uses Go modules", "tests run with -race"}))
	clk.set(at(430))
	must(repo.CompleteFeatureRun(ctx, run))
	return run, reviewer
}

// TestInBrowser loads the run list in Chromium, clicks through to the
// run, checks its waterfall's bars, opens the invocation whose output
// holds markup and checks it shows as text and runs nothing, and saves a
// screenshot of the run's page.
func TestInBrowser(t *testing.T) {
	path := chromium(t)
	start := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	clk := &clock{t: start}
	db, err := gorm.Open(sqlite.Open("file::memory:?_foreign_keys=on"), &gorm.Config{Logger: logger.Discard, NowFunc: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1)
	t.Cleanup(func() { sqlDB.Close() })
	ctx := t.Context()
	if err := migrate.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	repo := repository.New(db)
	run, reviewer := seed(t, ctx, repo, clk, start)
	clk.set(start.Add(10 * time.Minute))

	// Mounted under a prefix, as an application would.
	mux := http.NewServeMux()
	mux.Handle("/admin/runs/", http.StripPrefix("/admin/runs", runview.New(repo, runview.Options{Now: clk.now})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	actx, cancel := chromedp.NewExecAllocator(ctx, opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	base := srv.URL + "/admin/runs/"
	// The first call starts the browser, which lives as long as its
	// context: no deadline on it; on the later steps, one each.
	must(chromedp.Do(bctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("table.runs"))))
	step := func() context.Context {
		c, cancel := context.WithTimeout(bctx, 30*time.Second)
		t.Cleanup(cancel)
		return c
	}

	// Any dialog (an alert the markup would raise) fails the test; it is
	// closed, so that the page goes on.
	var mu sync.Mutex
	var dialogs []string
	go func() {
		for ev, err := range chromedp.Events(bctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			mu.Lock()
			dialogs = append(dialogs, ev.Message)
			mu.Unlock()
			// If it cannot be closed, the next step times out and says so.
			_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()

	title, err := chromedp.Run(step(), chromedp.Title())
	must(err)
	first, err := chromedp.Run(step(), chromedp.Text(chromedp.CSS("table.runs tbody tr:first-child a.id")))
	must(err)
	short := run.String()[:8]
	if title != "Runs · runview" || first != short {
		t.Errorf("list: title %q, first run %q, want the newest, %s", title, first, short)
	}
	must(chromedp.Do(step(), chromedp.Click(chromedp.CSS(`a[href="runs/`+run.String()+`"]`)), chromedp.WaitVisible(chromedp.CSS("table.wf"))))
	url, err := chromedp.Run(step(), chromedp.Location())
	must(err)
	if url != base+"runs/"+run.String() {
		t.Errorf("the run's link led to %s", url)
	}
	bars, err := chromedp.Run(step(), chromedp.Nodes(chromedp.CSSAll("table.wf rect.bar")))
	must(err)
	deadlines, err := chromedp.Run(step(), chromedp.Nodes(chromedp.CSSAll("table.wf line.deadline")))
	must(err)
	shot, err := chromedp.Run(step(), chromedp.FullScreenshot(100))
	must(err)
	// A bar for the run, 4 phases, 8 invocations and the CTA event; two
	// for the sandbox's lifecycle (creating, then up).
	if len(bars) != 1+4+8+1+2 {
		t.Errorf("%d bars in the waterfall, want 16", len(bars))
	}
	if len(deadlines) != 1 {
		t.Errorf("%d deadlines, want the CTA event's", len(deadlines))
	}
	// The failed tester ran from 291 s to 331 s of a 430 s run: its
	// bar's place and width are to scale.
	found := false
	for _, b := range bars {
		if strings.Contains(b.AttributeValue("class"), "s-failed") {
			found = true
			x, w := b.AttributeValue("x"), b.AttributeValue("width")
			if x != fmt.Sprintf("%.2f", 291.0/430*1000) || w != fmt.Sprintf("%.2f", 40.0/430*1000) {
				t.Errorf("the failed tester's bar is at %s, %s wide", x, w)
			}
		}
	}
	if !found {
		t.Error("no bar of a failed invocation")
	}

	must(chromedp.Do(step(), chromedp.Click(chromedp.CSS(`a[href$="/invocations/`+reviewer.String()+`"]`)), chromedp.WaitVisible(chromedp.CSS("pre"))))
	output, err := chromedp.Run(step(), chromedp.Text(chromedp.Search(`//h2[text()="Output"]/following-sibling::pre[1]`)))
	must(err)
	// The output is a JSON string, its quotes escaped by JSON.
	if want := `"` + strings.ReplaceAll(hostile, `"`, `\"`) + `"`; output != want {
		t.Errorf("the reviewer's output shows as %q, want the markup as text", output)
	}
	injected, err := chromedp.Run(step(), chromedp.Nodes(chromedp.CSSAll("script, img, [onerror]"), chromedp.AtLeast(0)))
	must(err)
	if len(injected) != 0 {
		t.Errorf("%d script or img elements on the page: markup was not escaped", len(injected))
	}
	mu.Lock()
	if len(dialogs) > 0 {
		t.Errorf("the page opened dialogs: %q", dialogs)
	}
	mu.Unlock()

	out := filepath.Join(t.TempDir(), "runview.png")
	if *update {
		out = filepath.Join("..", "..", "docs", "runview.png")
		must(os.MkdirAll(filepath.Dir(out), 0o755))
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the run page (%d bytes) in %s", len(shot), out)
}
