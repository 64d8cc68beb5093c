package runner

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/jepsen/checker"
	"cairn/jepsen/client"
	"cairn/jepsen/cluster"
	"cairn/jepsen/history"
	"cairn/jepsen/nemesis"
)

// fakeCluster satisfies cluster.Cluster for judging tests; nothing runs.
type fakeCluster struct{ crashes []string }

func (f *fakeCluster) Kind() string                         { return "fake" }
func (f *fakeCluster) Nodes() []cluster.Node                { return nil }
func (f *fakeCluster) Start() error                         { return nil }
func (f *fakeCluster) Stop() error                          { return nil }
func (f *fakeCluster) Teardown() error                      { return nil }
func (f *fakeCluster) StartNode(string) error               { return nil }
func (f *fakeCluster) Kill(string) error                    { return nil }
func (f *fakeCluster) Running(string) bool                  { return true }
func (f *fakeCluster) Pause(string) error                   { return nil }
func (f *fakeCluster) Resume(string) error                  { return nil }
func (f *fakeCluster) ResumeAll() error                     { return nil }
func (f *fakeCluster) Partition(cluster.Grudge) error       { return nil }
func (f *fakeCluster) Heal() error                          { return nil }
func (f *fakeCluster) PartitionCheck() error                { return nil }
func (f *fakeCluster) SetClock(string, time.Duration) error { return nil }
func (f *fakeCluster) ResetClocks() error                   { return nil }
func (f *fakeCluster) ClockCheck() error                    { return nil }
func (f *fakeCluster) LogPath(string) string                { return "" }
func (f *fakeCluster) Crashes() []string                    { return f.crashes }

// judged builds a run over a register history: n sequential ok writes
// and reads on one key before the faults (at times 1..), then extra ops.
func judged(t *testing.T, expect string, okBefore int, extra func(rec *history.Recorder, at *int64)) *Report {
	t.Helper()
	dir := t.TempDir()
	rec, err := history.NewRecorder(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	at := int64(1)
	add := func(op history.Op) {
		op.Time = at
		at++
		rec.Add(op)
	}
	for i := 0; i < okBefore; i++ {
		v := history.Str(string(rune('a' + i%26)))
		add(history.Op{Process: 0, Type: history.Invoke, F: "write", Key: "k", Value: v})
		add(history.Op{Process: 0, Type: history.OK, F: "write", Key: "k", Value: v})
	}
	faultStart := at
	if extra != nil {
		extra(rec, &at)
	}
	nem, _ := nemesis.New("partition", time.Second)
	cfg := Config{Workload: "register", Nemesis: "partition", Consistency: client.Quorum, Expect: expect, Dir: dir}
	cfg.Defaults()
	r := &run{cfg: cfg, c: &fakeCluster{}, rec: rec, out: io.Discard, nem: nem,
		rep: &Report{Config: cfg, Result: Pass, faultStart: faultStart, healAt: at + 1000}}
	r.judge()
	return r.rep
}

// staleRead appends: write x ok, then write y ok, then a read returning x.
func staleRead(rec *history.Recorder, at *int64) {
	for _, op := range []history.Op{
		{Process: 1, Type: history.Invoke, F: "write", Key: "j", Value: history.Str("x")},
		{Process: 1, Type: history.OK, F: "write", Key: "j", Value: history.Str("x")},
		{Process: 1, Type: history.Invoke, F: "write", Key: "j", Value: history.Str("y")},
		{Process: 1, Type: history.OK, F: "write", Key: "j", Value: history.Str("y")},
		{Process: 2, Type: history.Invoke, F: "read", Key: "j"},
		{Process: 2, Type: history.OK, F: "read", Key: "j", Value: history.Str("x")},
	} {
		op.Time = *at
		*at++
		rec.Add(op)
	}
}

func TestJudgePassesALinearizableRun(t *testing.T) {
	rep := judged(t, "", 30, nil)
	if rep.Result != Pass || rep.Counts["before"].OK != 30 {
		t.Fatalf("%s %v %+v", rep.Result, rep.Reasons, rep.Counts)
	}
}

func TestJudgeFailsOnAViolation(t *testing.T) {
	rep := judged(t, "", 30, staleRead)
	if rep.Result != Fail || rep.Register == nil || rep.Register.Verdict != checker.Invalid {
		t.Fatalf("%s %v", rep.Result, rep.Reasons)
	}
	if rep.Counts["during"].OK != 3 {
		t.Fatalf("counts %+v", rep.Counts)
	}
}

func TestJudgeIsInvalidWithTooFewOperationsBeforeFaults(t *testing.T) {
	rep := judged(t, "", 5, nil)
	if rep.Result != Invalid || !strings.Contains(strings.Join(rep.Reasons, " "), "before the first fault") {
		t.Fatalf("%s %v", rep.Result, rep.Reasons)
	}
	// ... but a violation still fails it
	rep = judged(t, "", 5, staleRead)
	if rep.Result != Fail {
		t.Fatalf("%s %v", rep.Result, rep.Reasons)
	}
}

func TestNegativeControlPassesOnlyWhenTheCheckerBites(t *testing.T) {
	if rep := judged(t, "violation", 30, staleRead); rep.Result != Pass {
		t.Fatalf("control with a violation: %s %v", rep.Result, rep.Reasons)
	}
	rep := judged(t, "violation", 30, nil)
	if rep.Result != Fail || !strings.Contains(strings.Join(rep.Reasons, " "), "not biting") {
		t.Fatalf("control without a violation: %s %v", rep.Result, rep.Reasons)
	}
}

func TestJudgeFailsWhenANodeCrashed(t *testing.T) {
	dir := t.TempDir()
	rec, _ := history.NewRecorder(filepath.Join(dir, "h.jsonl"))
	defer rec.Close()
	for i := 0; i < 25; i++ {
		rec.Add(history.Op{Process: 0, Type: history.Invoke, F: "read", Key: "k"})
		rec.Add(history.Op{Process: 0, Type: history.OK, F: "read", Key: "k"})
	}
	cfg := Config{Workload: "register", Nemesis: "none", Dir: dir}
	cfg.Defaults()
	r := &run{cfg: cfg, c: &fakeCluster{crashes: []string{"n2 exited on its own"}}, rec: rec, out: io.Discard,
		rep: &Report{Config: cfg, Result: Pass, faultStart: 1 << 62, healAt: 1 << 62}}
	r.judge()
	if r.rep.Result != Fail || !strings.Contains(strings.Join(r.rep.Reasons, " "), "n2 exited") {
		t.Fatalf("%s %v", r.rep.Result, r.rep.Reasons)
	}
}

func TestSummaryTableAndText(t *testing.T) {
	a := judged(t, "", 30, nil)
	b := judged(t, "", 30, staleRead)
	a.Config.Name, b.Config.Name = "s", "s"
	rows := Summarize([]*Report{a, b})
	if len(rows) != 1 || rows[0].Runs != 2 || rows[0].Verdicts[Pass] != 1 || rows[0].Verdicts[Fail] != 1 ||
		len(rows[0].Failures) != 1 {
		t.Fatalf("%+v", rows[0])
	}
	tab := Table(rows)
	if !strings.Contains(tab, "| s | partition | register | QUORUM | 2 |") || !strings.Contains(tab, "1 PASS, 1 FAIL") {
		t.Fatalf("%s", tab)
	}
	text := b.Text()
	if !strings.HasSuffix(text, "RESULT: FAIL\n") || !strings.Contains(text, "linearizable  invalid") {
		t.Fatalf("%s", text)
	}
}
