package checker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/jepsen/history"
)

// h builds a history from compact lines: "p type f key value time", with
// value "-" for nil.
func h(t *testing.T, lines ...string) []history.Op {
	t.Helper()
	var ops []history.Op
	for i, l := range lines {
		var op history.Op
		f := strings.Fields(l)
		if len(f) != 6 {
			t.Fatalf("bad line %q", l)
		}
		op.Index = i
		op.Process = atoi(t, f[0])
		op.Type, op.F, op.Key = f[1], f[2], f[3]
		if f[4] != "-" {
			op.Value = history.Str(f[4])
		}
		op.Time = int64(atoi(t, f[5]))
		ops = append(ops, op)
	}
	return ops
}

func atoi(t *testing.T, s string) int {
	n := 0
	neg := strings.HasPrefix(s, "-")
	for _, c := range strings.TrimPrefix(s, "-") {
		if c < '0' || c > '9' {
			t.Fatalf("bad number %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n
	}
	return n
}

func check(t *testing.T, ops []history.Op) RegisterResult {
	t.Helper()
	r, err := CheckRegisters(ops, 10*time.Second, 2, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegisterSequentialHistoryIsLinearizable(t *testing.T) {
	r := check(t, h(t,
		"0 invoke read k - 1", "0 ok read k - 2",
		"0 invoke write k 1 3", "0 ok write k 1 4",
		"1 invoke read k - 5", "1 ok read k 1 6",
		"1 invoke write k 2 7", "1 ok write k 2 8",
		"0 invoke read k - 9", "0 ok read k 2 10",
	))
	if r.Verdict != Valid || r.Keys != 1 || r.Operations != 5 {
		t.Fatalf("%+v", r)
	}
}

func TestRegisterStaleReadIsNotLinearizable(t *testing.T) {
	dir := t.TempDir()
	ops := reorder(h(t,
		"0 invoke write k 1 1", "0 ok write k 1 2",
		"1 invoke write k 2 3", "1 ok write k 2 4",
		"2 invoke read k - 5", "2 ok read k 1 6", // 2 was written after 1 finished
		"3 invoke write j 9 1", "3 ok write j 9 2", // another key, fine
	))
	r, err := CheckRegisters(ops, 10*time.Second, 2, dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Invalid || len(r.IllegalKeys) != 1 || r.IllegalKeys[0] != "k" || r.Keys != 2 {
		t.Fatalf("%+v", r)
	}
	if len(r.Visualized) != 1 {
		t.Fatalf("no visualisation: %+v", r)
	}
	if b, err := os.ReadFile(r.Visualized[0]); err != nil || len(b) < 100 {
		t.Fatalf("visualisation %s: %v", r.Visualized[0], err)
	}
	if filepath.Dir(r.Visualized[0]) != dir {
		t.Fatalf("visualisation in %s", r.Visualized[0])
	}
}

// reorder sorts a hand-built history by time, keeping each process's
// order (for histories written key by key).
func reorder(ops []history.Op) []history.Op {
	out := append([]history.Op(nil), ops...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Time < out[j-1].Time; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	for i := range out {
		out[i].Index = i
	}
	return out
}

func TestRegisterReadOfNeverWrittenValueIsNotLinearizable(t *testing.T) {
	r := check(t, h(t,
		"0 invoke write k 1 1", "0 ok write k 1 2",
		"1 invoke read k - 3", "1 ok read k 7 4",
	))
	if r.Verdict != Invalid {
		t.Fatalf("%+v", r)
	}
}

func TestRegisterIndeterminateWriteMayTakeEffectLater(t *testing.T) {
	// write 1 timed out; much later a read sees it, after write 2 was seen
	r := check(t, h(t,
		"0 invoke write k 1 1", "0 info write k 1 2",
		"1 invoke write k 2 3", "1 ok write k 2 4",
		"2 invoke read k - 5", "2 ok read k 2 6",
		"2 invoke read k - 7", "2 ok read k 1 8",
	))
	if r.Verdict != Valid || r.InfoWrites != 1 {
		t.Fatalf("info write may land late: %+v", r)
	}
	// ... but once it has been seen and overwritten, it cannot come back
	r = check(t, h(t,
		"0 invoke write k 1 1", "0 info write k 1 2",
		"2 invoke read k - 3", "2 ok read k 1 4",
		"1 invoke write k 2 5", "1 ok write k 2 6",
		"2 invoke read k - 7", "2 ok read k 1 8",
	))
	if r.Verdict != Invalid {
		t.Fatalf("a value came back after being overwritten: %+v", r)
	}
}

func TestRegisterFailedWriteIsNeverApplied(t *testing.T) {
	r := check(t, h(t,
		"0 invoke write k 1 1", "0 fail write k 1 2",
		"1 invoke read k - 3", "1 ok read k 1 4",
	))
	if r.Verdict != Invalid {
		t.Fatalf("a failed write was read: %+v", r)
	}
	r = check(t, h(t,
		"0 invoke write k 1 1", "0 fail write k 1 2",
		"1 invoke read k - 3", "1 ok read k - 4",
		"1 invoke read k - 5", "1 info read k - 6",
	))
	if r.Verdict != Valid || r.IgnoredReads != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestRegisterRejectsMalformedHistories(t *testing.T) {
	_, err := CheckRegisters(h(t, "0 invoke read k - 1", "0 invoke read k - 2"), time.Second, 1, "", 0)
	if err == nil {
		t.Fatal("double invoke accepted")
	}
	_, err = CheckRegisters(h(t, "0 ok read k - 1"), time.Second, 1, "", 0)
	if err == nil {
		t.Fatal("completion without invocation accepted")
	}
}

func TestSetLostRecoveredUnexpectedAndFailedPresent(t *testing.T) {
	ops := h(t,
		"0 invoke add s1 e1 1", "0 ok add s1 e1 2",
		"0 invoke add s2 e2 3", "0 ok add s2 e2 4",
		"0 invoke add s3 e3 5", "0 info add s3 e3 6",
		"0 invoke add s4 e4 7", "0 info add s4 e4 8",
		"0 invoke add s5 e5 9", "0 fail add s5 e5 10",
		"0 invoke add s6 e6 11", "0 fail add s6 e6 12",
		"9 invoke final-read s1 - 20", "9 ok final-read s1 e1 21",
		"9 invoke final-read s2 - 22", "9 ok final-read s2 - 23", // lost
		"9 invoke final-read s3 - 24", "9 ok final-read s3 e3 25", // recovered
		"9 invoke final-read s4 - 26", "9 ok final-read s4 - 27",
		"9 invoke final-read s5 - 28", "9 ok final-read s5 e5 29", // failed but present
		"9 invoke final-read s6 - 30", "9 ok final-read s6 - 31",
		"9 invoke final-read probe1 - 32", "9 ok final-read probe1 x 33", // unexpected
	)
	r, err := CheckSet(ops)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Invalid || r.Attempted != 6 || r.Acked != 2 || r.Failed != 2 || r.Indefinite != 2 {
		t.Fatalf("%+v", r)
	}
	if strings.Join(r.Lost, ",") != "s2" || strings.Join(r.Recovered, ",") != "s3" ||
		strings.Join(r.FailedPresent, ",") != "s5" || strings.Join(r.Unexpected, ",") != "probe1=x" {
		t.Fatalf("%+v", r)
	}
}

func TestSetAllPresentIsValidAndUnreadIsUnknown(t *testing.T) {
	r, err := CheckSet(h(t,
		"0 invoke add s1 e1 1", "0 ok add s1 e1 2",
		"9 invoke final-read s1 - 3", "9 ok final-read s1 e1 4",
	))
	if err != nil || r.Verdict != Valid || r.Present != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = CheckSet(h(t,
		"0 invoke add s1 e1 1", "0 ok add s1 e1 2",
		"9 invoke final-read s1 - 3", "9 fail final-read s1 - 4",
	))
	if err != nil || r.Verdict != Unknown || len(r.Unreadable) != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = CheckSet(h(t, "0 invoke add s1 e1 1", "0 ok add s1 e1 2"))
	if err != nil || r.Verdict != Unknown {
		t.Fatalf("never read: %+v %v", r, err)
	}
}
