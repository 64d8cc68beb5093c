package history

import (
	"path/filepath"
	"testing"
)

func TestRecorderWritesJSONLinesThatReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	r, err := NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Add(Op{Process: 0, Type: Invoke, F: "write", Key: "k", Value: Str("1")})
	r.Add(Op{Process: NemesisProcess, Type: Info, F: "nemesis", Value: Str("start partition")})
	r.Add(Op{Process: 0, Type: OK, F: "write", Key: "k", Value: Str("1"), TS: 7, Node: "n1"})
	r.Add(Op{Process: 1, Type: Invoke, F: "read", Key: "k"})
	r.Add(Op{Process: 1, Type: OK, F: "read", Key: "k"})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ops, err := Read(path)
	if err != nil || len(ops) != 5 {
		t.Fatalf("%d ops, %v", len(ops), err)
	}
	for i, op := range ops {
		if op.Index != i || op.Time <= 0 {
			t.Fatalf("op %d: %+v", i, op)
		}
	}
	if ops[2].TS != 7 || ops[2].Node != "n1" || ops[4].Value != nil || ops[4].ValueString() != "nil" {
		t.Fatalf("%+v %+v", ops[2], ops[4])
	}
	pairs, err := Pairs(ops)
	if err != nil || len(pairs) != 2 || pairs[0].Complete == nil || pairs[0].Complete.Type != OK {
		t.Fatalf("%+v %v", pairs, err)
	}
}

func TestPairsLeavesUnfinishedOpsOpen(t *testing.T) {
	pairs, err := Pairs([]Op{{Process: 3, Type: Invoke, F: "write", Value: Str("x")}})
	if err != nil || len(pairs) != 1 || pairs[0].Complete != nil {
		t.Fatalf("%+v %v", pairs, err)
	}
	if _, err := Pairs([]Op{{Process: 3, Type: "bogus"}}); err == nil {
		t.Fatal("unknown type accepted")
	}
}
