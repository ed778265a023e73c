package runview

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/models"
	"github.com/agentpipeline/persistence/repository"
)

// base is what every page's layout needs.
type base struct {
	Title string
	// Root is the relative path back to the handler's root.
	Root string
	// Nav names the section of the page: runs, cta or leaked.
	Nav string
	// Refresh is the seconds after which the page reloads; 0 for never.
	Refresh int
	Now     time.Time
}

func (h *handler) base(r *http.Request, title, nav string) base {
	return base{Title: title, Root: root(r.URL.Path), Nav: nav, Now: h.opts.Now().UTC()}
}

// tab is a status tab of a listing.
type tab struct {
	Label  string
	Href   string
	Count  int64
	More   bool
	Active bool
}

// listRow is a run in the list.
type listRow struct {
	models.FeatureRun
	Summary   repository.RunSummary
	PhaseHref string
	// Duration is the run's, to now for a live run.
	Duration time.Duration
}

type listPage struct {
	base
	Tabs    []tab
	Filters []filterChip
	Runs    []listRow
	Next    string
}

// filterChip is an active filter, with the link that drops it.
type filterChip struct{ Label, Value, Drop string }

// list serves the run list.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var filter repository.RunFilter
	for _, s := range q["status"] {
		st := models.RunStatus(s)
		if !st.Valid() {
			badRequest(w, "status: unknown run status "+quote(s))
			return
		}
		filter.Statuses = append(filter.Statuses, st)
	}
	filter.Phase = q.Get("phase")
	var err error
	if filter.CreatedFrom, err = parseTime(q.Get("from")); err != nil {
		badRequest(w, "from: "+err.Error())
		return
	}
	if filter.CreatedBefore, err = parseTime(q.Get("to")); err != nil {
		badRequest(w, "to: "+err.Error())
		return
	}
	ctx := r.Context()
	page, err := h.repo.ListFeatureRuns(ctx, filter, repository.Page{Limit: h.opts.PageSize, After: q.Get("after")})
	if err != nil {
		h.fail(w, r, "runs", err)
		return
	}
	unfiltered := filter
	unfiltered.Statuses = nil
	counts, err := h.repo.CountFeatureRuns(ctx, unfiltered, h.opts.CountLimit)
	if err != nil {
		h.fail(w, r, "runs", err)
		return
	}
	ids := make([]uuid.UUID, len(page.Runs))
	for i, run := range page.Runs {
		ids[i] = run.ID
	}
	sums, err := h.repo.SummarizeRuns(ctx, ids)
	if err != nil {
		h.fail(w, r, "runs", err)
		return
	}

	p := listPage{base: h.base(r, "Runs", "runs")}
	// Links keep the other filters and drop the cursor.
	link := func(change func(url.Values)) string {
		v := url.Values{}
		for _, k := range []string{"status", "phase", "from", "to"} {
			if vs, ok := q[k]; ok {
				v[k] = slices.Clone(vs)
			}
		}
		change(v)
		if len(v) == 0 {
			return "./"
		}
		return "?" + v.Encode()
	}
	all := tab{Label: "All", Href: link(func(v url.Values) { v.Del("status") }), Active: len(filter.Statuses) == 0}
	for _, c := range counts {
		all.Count += c.Count
		all.More = all.More || c.More
	}
	p.Tabs = append(p.Tabs, all)
	for _, c := range counts {
		p.Tabs = append(p.Tabs, tab{
			Label: string(c.Status), Count: c.Count, More: c.More,
			Href:   link(func(v url.Values) { v["status"] = []string{string(c.Status)} }),
			Active: len(filter.Statuses) == 1 && filter.Statuses[0] == c.Status,
		})
	}
	for _, k := range []string{"phase", "from", "to"} {
		if q.Get(k) != "" {
			p.Filters = append(p.Filters, filterChip{Label: k, Value: q.Get(k), Drop: link(func(v url.Values) { v.Del(k) })})
		}
	}
	for _, run := range page.Runs {
		end := p.Now
		if run.CompletedAt != nil {
			end = *run.CompletedAt
		}
		p.Runs = append(p.Runs, listRow{
			FeatureRun: run, Summary: sums[run.ID], Duration: end.Sub(run.CreatedAt),
			PhaseHref: link(func(v url.Values) { v.Set("phase", run.Phase) }),
		})
	}
	if page.Next != "" {
		p.Next = link(func(v url.Values) { v.Set("after", page.Next) })
	}
	h.render(w, r, "list", p)
}

// parseTime parses an RFC 3339 time, or the empty string as the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errNotRFC3339
	}
	return t, nil
}

type plainError string

func (e plainError) Error() string { return string(e) }

const errNotRFC3339 = plainError("not an RFC 3339 time, such as 2025-01-02T15:04:05Z")

// quote quotes s for a plain message, cut short.
func quote(s string) string {
	t, n := cut([]byte(s), 64)
	if n > 0 {
		t += "…"
	}
	return `"` + t + `"`
}

type runPage struct {
	base
	Run       models.FeatureRun
	Waterfall waterfall
	Usage     repository.Usage
	Memories  []payload
	Metadata  payload
	Error     payload
	Sandboxes []sandboxView
	CTAEvents []ctaView
	// Silent is set for a running run that recorded nothing for
	// Options.SilentAfter, and LastSeen is its last record.
	Silent   bool
	LastSeen time.Time
}

type sandboxView struct {
	models.Sandbox
	Metadata payload
	RunHref  string
}

type ctaView struct {
	models.CTAEvent
	Request  payload
	Response payload
	RunHref  string
}

// run serves the page of a run.
func (h *handler) run(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		badRequest(w, "malformed run ID "+quote(r.PathValue("id")))
		return
	}
	ctx := r.Context()
	tl, err := h.repo.RunOutline(ctx, id)
	if err != nil {
		h.fail(w, r, "run", err)
		return
	}
	usage, err := h.repo.RunUsage(ctx, id)
	if err != nil {
		h.fail(w, r, "run", err)
		return
	}
	p := runPage{base: h.base(r, "Run "+id.String()[:8], "runs"), Run: tl.Run, Usage: usage}
	p.LastSeen = lastSeen(tl)
	end := p.Now
	switch {
	case tl.Run.CompletedAt != nil:
		end = *tl.Run.CompletedAt
	case p.Now.Sub(p.LastSeen) > h.opts.SilentAfter:
		p.Silent, end = true, p.LastSeen
	default:
		if h.opts.Refresh > 0 {
			p.Refresh = max(1, int(h.opts.Refresh.Round(time.Second)/time.Second))
		}
	}
	if end.Before(p.LastSeen) {
		end = p.LastSeen
	}
	p.Waterfall = layout(tl, end)
	p.Memories = memories(tl.Run.Memories, h.opts.MaxPayloadBytes)
	p.Metadata = h.secret(RunMetadata, tl.Run.Metadata)
	if tl.Run.Error != nil {
		p.Error = newText(*tl.Run.Error, h.opts.MaxPayloadBytes)
	}
	for _, s := range tl.Sandboxes {
		p.Sandboxes = append(p.Sandboxes, sandboxView{Sandbox: s, Metadata: h.secret(SandboxMetadata, s.Metadata)})
	}
	for _, c := range tl.CTAEvents {
		p.CTAEvents = append(p.CTAEvents, h.ctaView(c, ""))
	}
	h.render(w, r, "run", p)
}

func (h *handler) ctaView(c models.CTAEvent, runHref string) ctaView {
	return ctaView{
		CTAEvent: c, RunHref: runHref,
		Request:  newPayload(c.RequestData, min(h.opts.MaxPayloadBytes, 2048)),
		Response: h.secret(CTAResponse, c.ResponseData),
	}
}

// lastSeen returns the latest time tl records.
func lastSeen(tl *repository.Timeline) time.Time {
	t := tl.Run.UpdatedAt
	later := func(ts ...time.Time) {
		for _, u := range ts {
			if u.After(t) {
				t = u
			}
		}
	}
	for _, p := range tl.Phases {
		later(p.UpdatedAt)
	}
	for _, s := range tl.Sandboxes {
		later(s.UpdatedAt)
	}
	for _, c := range tl.CTAEvents {
		later(c.UpdatedAt)
	}
	for _, f := range flatten(tl) {
		later(f.inv.UpdatedAt)
	}
	return t
}

// memories splits a run's memories, a JSON array, into its values.
func memories(raw []byte, max int) []payload {
	var values []jsonRaw
	if err := unmarshal(raw, &values); err != nil {
		return []payload{newPayload(raw, max)}
	}
	out := make([]payload, len(values))
	for i, v := range values {
		out[i] = newPayload(v, max)
	}
	return out
}

type invocationPage struct {
	base
	RunID      uuid.UUID
	Inv        models.AgentInvocation
	Input      payload
	Steps      payload
	ToolCalls  payload
	Output     payload
	Error      payload
	Usage      repository.UsageTotals
	Duration   *time.Duration
	FirstToken *time.Duration
}

// invocation serves the page of one agent invocation of a run.
func (h *handler) invocation(w http.ResponseWriter, r *http.Request) {
	runID, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		badRequest(w, "malformed run ID "+quote(r.PathValue("id")))
		return
	}
	invID, err := uuid.Parse(r.PathValue("inv"))
	if err != nil {
		badRequest(w, "malformed invocation ID "+quote(r.PathValue("inv")))
		return
	}
	inv, err := h.repo.GetAgentInvocation(r.Context(), invID)
	if err == nil && inv.FeatureRunID != runID {
		// Another run's: not an invocation of this one.
		err = repository.ErrNotFound
	}
	if err != nil {
		h.fail(w, r, "invocation", err)
		return
	}
	max := h.opts.MaxPayloadBytes
	p := invocationPage{
		base:  h.base(r, inv.Agent+" "+invID.String()[:8], "runs"),
		RunID: runID, Inv: *inv,
		Input: newPayload(inv.Input, max), Steps: newPayload(inv.Steps, max),
		ToolCalls: newPayload(inv.ToolCalls, max), Output: newPayload(inv.Output, max),
		Usage: repository.UsageTotals{
			Invocations: 1, InputTokens: inv.InputTokens, OutputTokens: inv.OutputTokens,
			CacheReadInputTokens: inv.CacheReadInputTokens, CacheWriteInputTokens: inv.CacheWriteInputTokens,
			ReasoningOutputTokens: inv.ReasoningOutputTokens, CostNanoUSD: inv.CostNanoUSD,
		},
	}
	if inv.Error != nil {
		p.Error = newText(*inv.Error, max)
	}
	if inv.FinishedAt != nil {
		start := inv.CreatedAt
		if inv.StartedAt != nil {
			start = *inv.StartedAt
		}
		d := inv.FinishedAt.Sub(start)
		p.Duration = &d
	}
	if inv.TimeToFirstTokenMicros != nil {
		d := time.Duration(*inv.TimeToFirstTokenMicros) * time.Microsecond
		p.FirstToken = &d
	}
	h.render(w, r, "invocation", p)
}

type ctaPage struct {
	base
	Tabs   []tab
	Events []ctaView
	Next   string
}

// cta serves the CTA events across runs, soonest deadline first.
func (h *handler) cta(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := models.CTAStatus(q.Get("status"))
	if status != "" && !status.Valid() {
		badRequest(w, "status: unknown CTA status "+quote(string(status)))
		return
	}
	if status == "" {
		status = models.CTAPending
	}
	page, err := h.repo.ListCTAEvents(r.Context(), repository.CTAFilter{Status: status}, repository.Page{Limit: h.opts.PageSize, After: q.Get("after")})
	if err != nil {
		h.fail(w, r, "CTA events", err)
		return
	}
	p := ctaPage{base: h.base(r, "CTA events", "cta")}
	for _, s := range []models.CTAStatus{models.CTAPending, models.CTACompleted, models.CTATimedOut} {
		href := "cta"
		if s != models.CTAPending {
			href += "?status=" + url.QueryEscape(string(s))
		}
		p.Tabs = append(p.Tabs, tab{Label: string(s), Href: href, Active: s == status})
	}
	for _, e := range page.Events {
		p.Events = append(p.Events, h.ctaView(e, "runs/"+e.FeatureRunID.String()))
	}
	if page.Next != "" {
		v := url.Values{"after": {page.Next}}
		if status != models.CTAPending {
			v.Set("status", string(status))
		}
		p.Next = "cta?" + v.Encode()
	}
	h.render(w, r, "cta", p)
}

type leakedPage struct {
	base
	Older     time.Duration
	Sandboxes []sandboxView
}

// leaked serves the sandboxes left running.
func (h *handler) leaked(w http.ResponseWriter, r *http.Request) {
	older := time.Hour
	if s := r.URL.Query().Get("older"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			badRequest(w, "older: not a positive duration, such as 30m or 2h")
			return
		}
		older = d
	}
	leaked, err := h.repo.LeakedSandboxes(r.Context(), older)
	if err != nil {
		h.fail(w, r, "sandboxes", err)
		return
	}
	p := leakedPage{base: h.base(r, "Leaked sandboxes", "leaked"), Older: older}
	for _, s := range leaked {
		p.Sandboxes = append(p.Sandboxes, sandboxView{Sandbox: s, Metadata: h.secret(SandboxMetadata, s.Metadata), RunHref: "../runs/" + s.FeatureRunID.String()})
	}
	h.render(w, r, "leaked", p)
}
