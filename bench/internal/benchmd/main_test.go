package main

import (
	"strings"
	"testing"
)

// fencedCSV is what benchstat prints with -col '/impl@(repository fenced)'
// for both databases' results: every benchmark has the repository's
// unfenced side, only the fenced moves have the fenced one.
const fencedCSV = `goos: linux
goarch: amd64
pkg: github.com/agentpipeline/persistence/bench
cpu: AMD EPYC
,repository,,fenced,,,
,sec/op,CI,sec/op,CI,vs base,P
Write/CreateFeatureRun-2,0.0002,5%
Write/UpdateFeatureRunPhase-2,0.0001,5%,0.000105,6%,+5.00%,p=0.041 n=6
Replay/UpdateSandboxStatus/db=mariadb-2,0.001,5%,0.0012,4%,~,p=0.818 n=6
Workload/workers=1/db=mariadb-2,0.1,5%

,repository,,fenced,,,
,allocs/op,CI,allocs/op,CI,vs base,P
Write/CreateFeatureRun-2,56,0%
Write/UpdateFeatureRunPhase-2,24,0%,25,0%,+4.17%,p=0.002 n=6
Replay/UpdateSandboxStatus/db=mariadb-2,53,0%,54,0%,+1.89%,p=0.002 n=6
`

func TestFenced(t *testing.T) {
	res, order, err := parse(strings.NewReader(fencedCSV), columns{base: "repository", side: "fenced", sideOptional: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	p := &printer{w: &out, res: res, base: "pgx"}
	if err := p.fenced(order); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"## Fenced against unfenced\n",
		"| PostgreSQL | happy | UpdateFeatureRunPhase | 100.0 µs 5% | 105.0 µs 6% | 1.05x | yes | +5.00% p=0.041 n=6 | n/a | n/a | n/a | 24.0 | 25.0 | n/a | n/a | n/a / n/a |\n",
		"| MariaDB | replay | UpdateSandboxStatus | 1.00 ms 5% | 1.20 ms 4% | 1.20x | no | ~ p=0.818 n=6 | n/a | n/a | n/a | 53.0 | 54.0 | n/a | n/a | n/a / n/a |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"CreateFeatureRun", "Workload"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("%s, which has no fenced side, in\n%s", unwanted, got)
		}
	}
	if n := strings.Count(got, "\n| PostgreSQL") + strings.Count(got, "\n| MariaDB"); n != 2 {
		t.Errorf("%d rows, want 2, in\n%s", n, got)
	}
}

// TestFencedWithoutFencedResults renders results without a fenced side,
// as benchstat prints them with the fenced column and, for results of
// before the fenced side, without.
func TestFencedWithoutFencedResults(t *testing.T) {
	for _, csv := range []string{
		",repository,,fenced,,,\n,sec/op,CI,sec/op,CI,vs base,P\nWrite/CreateFeatureRun-2,0.0002,5%\n",
		",repository,\n,sec/op,CI\nWrite/CreateFeatureRun-2,0.0002,5%\n",
	} {
		res, order, err := parse(strings.NewReader(csv), columns{base: "repository", side: "fenced", sideOptional: true}, true)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := (&printer{w: &out, res: res}).fenced(order); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "No fenced write was measured.") {
			t.Errorf("got\n%s", out.String())
		}
	}
}

func TestParseRefusesOtherColumns(t *testing.T) {
	csv := ",pgx,,repository,,,\n,sec/op,CI,sec/op,CI,vs base,P\n"
	if _, _, err := parse(strings.NewReader(csv), columns{base: "pgx", side: "repository", naive: "naive"}, false); err == nil {
		t.Error("parsed a CSV without the naive column")
	}
}
