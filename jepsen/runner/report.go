package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Text renders the report for people.
func (rep *Report) Text() string {
	var b strings.Builder
	cfg := rep.Config
	fmt.Fprintf(&b, "== %s\n", cfg.Name)
	fmt.Fprintf(&b, "seed %d; workload %s; nemesis %s; consistency %s; %s cluster\n",
		cfg.Seed, cfg.Workload, cfg.Nemesis, cfg.Consistency, rep.Cluster)
	fmt.Fprintf(&b, "time: warmup %v, faults %v (each %v, quiet %v), recovery %v; %d processes",
		cfg.Warmup, cfg.Duration, cfg.FaultTime, cfg.QuietTime, cfg.Recovery, cfg.Processes)
	if cfg.Workload == "register" {
		fmt.Fprintf(&b, " (%d per key, %d ops per key)", cfg.PerKey, cfg.OpsPerKey)
	}
	fmt.Fprintf(&b, ", ~%.0f ops/s, op timeout %v\n", cfg.Rate, cfg.OpTimeout)
	if cfg.Expect == "violation" {
		b.WriteString("NEGATIVE CONTROL: the linearizability checker must report a violation\n")
	}
	b.WriteString("fault timeline:\n")
	for _, e := range rep.Timeline {
		fmt.Fprintf(&b, "  %8.1fs  %s\n", e.At.Seconds(), e.What)
	}
	b.WriteString("operations (completions):       ok   fail   info\n")
	for _, phase := range []string{"before", "during", "after"} {
		c := rep.Counts[phase]
		label := map[string]string{"before": "before faults", "during": "during faults", "after": "after final heal"}[phase]
		fmt.Fprintf(&b, "  %-26s %7d %6d %6d\n", label, c.OK, c.Fail, c.Info)
	}
	for _, f := range []string{"read", "write", "add", "final-read"} {
		if c, ok := rep.ByF[f]; ok {
			fmt.Fprintf(&b, "  %-26s %7d %6d %6d\n", "  "+f, c.OK, c.Fail, c.Info)
		}
	}
	b.WriteString("checkers:\n")
	for _, ch := range rep.Checks {
		fmt.Fprintf(&b, "  %-13s %-8s %6.2fs  %s\n", ch.Name, ch.Verdict, ch.Elapsed.Seconds(), ch.Detail)
	}
	if rep.Register != nil && len(rep.Register.Visualized) > 0 {
		b.WriteString("Porcupine visualisations of the failing keys:\n")
		for _, v := range rep.Register.Visualized {
			fmt.Fprintf(&b, "  %s\n", v)
		}
	}
	for _, r := range rep.Reasons {
		fmt.Fprintf(&b, "%s\n", r)
	}
	fmt.Fprintf(&b, "history: %s\n", rep.History)
	fmt.Fprintf(&b, "report:  %s\n", filepath.Join(cfg.Dir, "report.txt"))
	fmt.Fprintf(&b, "elapsed: %.1fs\n", rep.Elapsed.Seconds())
	fmt.Fprintf(&b, "RESULT: %s\n", rep.Result)
	return b.String()
}

func (r *run) writeReport() {
	text := r.rep.Text()
	io.WriteString(r.out, text)
	os.WriteFile(filepath.Join(r.cfg.Dir, "report.txt"), []byte(text), 0o644)
	if b, err := json.MarshalIndent(r.rep, "", "  "); err == nil {
		os.WriteFile(filepath.Join(r.cfg.Dir, "report.json"), b, 0o644)
	}
}

// Row is one line of a summary table over several runs.
type Row struct {
	Scenario string
	Nemesis  string
	Workload string
	CL       string
	Runs     int
	Ops      int
	OK       int
	Fail     int
	Info     int
	Verdicts map[string]int
	Check    time.Duration
	Failures []string // run dirs of failed / invalid runs
}

// Summarize groups reports by scenario name, in first-seen order.
func Summarize(reps []*Report) []*Row {
	var rows []*Row
	by := map[string]*Row{}
	for _, rep := range reps {
		cfg := rep.Config
		row := by[cfg.Name]
		if row == nil {
			row = &Row{Scenario: cfg.Name, Nemesis: cfg.Nemesis, Workload: cfg.Workload,
				CL: cfg.Consistency.String(), Verdicts: map[string]int{}}
			by[cfg.Name] = row
			rows = append(rows, row)
		}
		row.Runs++
		for _, c := range rep.Counts {
			row.OK += c.OK
			row.Fail += c.Fail
			row.Info += c.Info
		}
		row.Ops = row.OK + row.Fail + row.Info
		row.Verdicts[rep.Result]++
		for _, ch := range rep.Checks {
			switch ch.Name {
			case "linearizable", "set", "convergence": // the checkers, not the waits
				row.Check += ch.Elapsed
			}
		}
		if rep.Result != Pass {
			row.Failures = append(row.Failures, fmt.Sprintf("%s (seed %d)", cfg.Dir, cfg.Seed))
		}
	}
	return rows
}

// Table renders rows as a Markdown table.
func Table(rows []*Row) string {
	var b strings.Builder
	b.WriteString("| scenario | nemesis | workload | CL | runs | ops | ok | fail | info | verdicts | checker time |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		var v []string
		for _, res := range []string{Pass, Fail, Invalid} {
			if n := r.Verdicts[res]; n > 0 {
				v = append(v, fmt.Sprintf("%d %s", n, res))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d | %d | %d | %s | %.1fs |\n",
			r.Scenario, r.Nemesis, r.Workload, r.CL, r.Runs, r.Ops, r.OK, r.Fail, r.Info,
			strings.Join(v, ", "), r.Check.Seconds())
	}
	return b.String()
}
