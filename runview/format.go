package runview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/agentpipeline/persistence/repository"
)

// pageNames are the page templates, each with the layout.
var pageNames = []string{"list", "run", "invocation", "cta", "leaked"}

// parsePages parses each page template with the layout.
func parsePages() map[string]*template.Template {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html"))
	}
	return pages
}

var funcs = template.FuncMap{
	"thousands": thousands,
	"usd":       repository.FormatNanoUSD,
	"short":     func(id uuid.UUID) string { return id.String()[:8] },
	"time":      formatTime,
	"timep": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return formatTime(*t)
	},
	"since": func(now, t time.Time) string { return human(now.Sub(t)) },
	"dur":   human,
	"bytes": byteSize,
	// refresh is the tag that reloads a live run's page; secs is an int
	// the handler computed, so the tag is safe as written.
	"refresh": func(secs int) template.HTML {
		return template.HTML(`<meta http-equiv="refresh" content="` + strconv.Itoa(secs) + `">`)
	},
	"groups": func(title string, g []repository.UsageGroup) usageTable { return usageTable{title, g} },
}

// usageTable is a table of usage groups.
type usageTable struct {
	Title  string
	Groups []repository.UsageGroup
}

// formatTime formats t in UTC to the millisecond.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") }

// thousands formats n with thousands separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// human formats a duration for people: 850ms, 12.3s, 4m05s, 3h20m, 2d4h.
func human(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	switch {
	case d < time.Second:
		return neg + strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return neg + strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%s%dm%02ds", neg, int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%s%dh%02dm", neg, int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%s%dd%dh", neg, int(d.Hours())/24, int(d.Hours())%24)
}

// byteSize formats a size in bytes.
func byteSize(n int) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d bytes", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// payload is a JSON value or a text as a page shows it: indented when it
// is JSON small enough, cut at the page's limit.
type payload struct {
	// Text is what is shown; html/template escapes it.
	Text string
	// Size is the size of the value as stored, in bytes.
	Size int
	// Cut is how many bytes were left out.
	Cut int
	// Hidden is set for a secret not shown.
	Hidden bool
	// Null is set for a value not recorded.
	Null bool
}

// newPayload returns the payload of a stored JSON value, cut at max bytes.
func newPayload(raw []byte, max int) payload {
	if len(raw) == 0 || string(raw) == "null" {
		return payload{Null: true, Size: len(raw)}
	}
	p := payload{Size: len(raw)}
	text := raw
	if len(raw) <= max {
		var b bytes.Buffer
		if json.Indent(&b, raw, "", "  ") == nil {
			text = b.Bytes()
		}
	}
	text = unescapeHTML(text)
	p.Text, p.Cut = cut(text, max)
	return p
}

// unescapeHTML writes the characters <, > and & that encoding/json
// escapes in strings (\u003c, \u003e, \u0026) as themselves, which is
// the same JSON, so that a page shows them as written; the page escapes
// them for HTML. Other escapes are left as they are.
func unescapeHTML(j []byte) []byte {
	if !bytes.Contains(j, []byte(`\u00`)) {
		return j
	}
	out := make([]byte, 0, len(j))
	for i := 0; i < len(j); i++ {
		if j[i] != '\\' || i+1 >= len(j) {
			out = append(out, j[i])
			continue
		}
		if j[i+1] == 'u' && i+6 <= len(j) {
			switch strings.ToLower(string(j[i+2 : i+6])) {
			case "003c":
				out, i = append(out, '<'), i+5
				continue
			case "003e":
				out, i = append(out, '>'), i+5
				continue
			case "0026":
				out, i = append(out, '&'), i+5
				continue
			}
		}
		// Any other escape, such as \\ or \", is kept whole, so that its
		// second byte is not read as the start of another.
		out, i = append(out, j[i], j[i+1]), i+1
	}
	return out
}

// newText returns the payload of a text, such as an error, cut at max.
func newText(s string, max int) payload {
	p := payload{Size: len(s)}
	p.Text, p.Cut = cut([]byte(s), max)
	return p
}

// cut returns the first max bytes of b, backed off to a boundary of
// UTF-8, and the number of bytes left out.
func cut(b []byte, max int) (string, int) {
	if len(b) <= max {
		return string(b), 0
	}
	n := max
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]), len(b) - n
}

// secret returns the payload of a value that may hold a secret, of the
// given column: hidden with its size, unless the options reveal it or
// redact it.
func (h *handler) secret(column string, raw []byte) payload {
	if len(raw) == 0 || string(raw) == "null" {
		return payload{Null: true}
	}
	shown := raw
	switch {
	case h.opts.Redact != nil:
		shown = h.opts.Redact(column, append([]byte(nil), raw...))
	case !h.opts.RevealSecrets:
		shown = nil
	}
	if shown == nil {
		return payload{Hidden: true, Size: len(raw)}
	}
	return newPayload(shown, h.opts.MaxPayloadBytes)
}

// jsonRaw is one value of a JSON array, as written.
type jsonRaw = json.RawMessage

func unmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
