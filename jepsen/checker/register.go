// Package checker judges histories: linearizability of registers (with
// Porcupine), the set workload's lost and unexpected elements, and whether
// replicas converged.
package checker

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"cairn/jepsen/history"
)

// Verdicts.
const (
	Valid   = "valid"
	Invalid = "invalid" // the property does not hold: a finding
	Unknown = "unknown" // could not be decided (checker timeout, unreadable data)
)

// regInput is a register operation; regOutput what a read returned.
type regInput struct {
	Write bool
	Value string
}

type regState struct {
	Found bool
	Value string
}

// RegisterModel is a read/write register whose initial state is "nothing"
// (a read finds no key).
var RegisterModel = porcupine.Model{
	Init: func() interface{} { return regState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st := state.(regState)
		in := input.(regInput)
		if in.Write {
			return true, regState{Found: true, Value: in.Value}
		}
		return output.(regState) == st, st
	},
	Equal: func(a, b interface{}) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output interface{}) string {
		in := input.(regInput)
		if in.Write {
			return "write(" + in.Value + ")"
		}
		out := output.(regState)
		if !out.Found {
			return "read() -> nil"
		}
		return "read() -> " + out.Value
	},
	DescribeState: func(state interface{}) string {
		st := state.(regState)
		if !st.Found {
			return "nil"
		}
		return st.Value
	},
}

// RegisterResult is the linearizability verdict over every key.
type RegisterResult struct {
	Verdict      string
	Keys         int
	Operations   int      // operations given to the checker (ok reads, ok and info writes)
	IllegalKeys  []string // keys whose history is not linearizable
	UnknownKeys  []string // keys the checker could not decide in time
	Elapsed      time.Duration
	Visualized   []string // HTML files for illegal keys
	LongestKey   int      // most operations on one key
	InfoWrites   int
	IgnoredReads int // reads that failed or timed out: no information
}

// RegisterOperations turns a history into Porcupine operations per key.
// Reads count only when they completed ok. A write that completed ok is
// [invoke, complete]; one that completed info (or never completed) may
// take effect at any time after its invocation, so it returns "at the end
// of time"; one that failed is certainly not applied and is left out.
func RegisterOperations(ops []history.Op) (map[string][]porcupine.Operation, int, int, error) {
	pairs, err := history.Pairs(ops)
	if err != nil {
		return nil, 0, 0, err
	}
	var end int64
	for _, op := range ops {
		if op.Time > end {
			end = op.Time
		}
	}
	forever := end + 1 // after everything: concurrent with every later op
	byKey := map[string][]porcupine.Operation{}
	infoWrites, ignored := 0, 0
	for _, p := range pairs {
		inv := p.Invoke
		if inv.F != "read" && inv.F != "write" {
			continue
		}
		typ := history.Info
		if p.Complete != nil {
			typ = p.Complete.Type
		}
		op := porcupine.Operation{ClientId: inv.Process, Call: inv.Time}
		switch inv.F {
		case "read":
			if typ != history.OK {
				ignored++
				continue
			}
			c := p.Complete
			op.Input = regInput{}
			if c.Value != nil {
				op.Output = regState{Found: true, Value: *c.Value}
			} else {
				op.Output = regState{}
			}
			op.Return = c.Time
		case "write":
			if inv.Value == nil {
				return nil, 0, 0, fmt.Errorf("write op %d has no value", inv.Index)
			}
			op.Input = regInput{Write: true, Value: *inv.Value}
			op.Output = regState{}
			switch typ {
			case history.OK:
				op.Return = p.Complete.Time
			case history.Fail:
				continue
			default:
				op.Return = forever
				infoWrites++
			}
		}
		byKey[inv.Key] = append(byKey[inv.Key], op)
	}
	return byKey, infoWrites, ignored, nil
}

// CheckRegisters checks every key's history with Porcupine, keyTimeout per
// key, on `workers` goroutines; for illegal keys (up to maxViz) it writes
// Porcupine's HTML visualisation into dir.
func CheckRegisters(ops []history.Op, keyTimeout time.Duration, workers int, dir string, maxViz int) (RegisterResult, error) {
	t0 := time.Now()
	byKey, infoWrites, ignored, err := RegisterOperations(ops)
	if err != nil {
		return RegisterResult{}, err
	}
	res := RegisterResult{Keys: len(byKey), InfoWrites: infoWrites, IgnoredReads: ignored}
	keys := make([]string, 0, len(byKey))
	for k, v := range byKey {
		keys = append(keys, k)
		res.Operations += len(v)
		if len(v) > res.LongestKey {
			res.LongestKey = len(v)
		}
	}
	sort.Strings(keys)
	if workers < 1 {
		workers = 1
	}
	type outcome struct {
		key  string
		res  porcupine.CheckResult
		info porcupine.LinearizationInfo
	}
	jobs := make(chan string)
	results := make(chan outcome)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				r, info := porcupine.CheckOperationsVerbose(RegisterModel, byKey[k], keyTimeout)
				results <- outcome{k, r, info}
			}
		}()
	}
	go func() {
		for _, k := range keys {
			jobs <- k
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	infos := map[string]porcupine.LinearizationInfo{}
	for o := range results {
		switch o.res {
		case porcupine.Illegal:
			res.IllegalKeys = append(res.IllegalKeys, o.key)
			infos[o.key] = o.info
		case porcupine.Unknown:
			res.UnknownKeys = append(res.UnknownKeys, o.key)
		}
	}
	sort.Strings(res.IllegalKeys)
	sort.Strings(res.UnknownKeys)
	switch {
	case len(res.IllegalKeys) > 0:
		res.Verdict = Invalid
	case len(res.UnknownKeys) > 0:
		res.Verdict = Unknown
	default:
		res.Verdict = Valid
	}
	for i, k := range res.IllegalKeys {
		if i >= maxViz || dir == "" {
			break
		}
		path := filepath.Join(dir, "linearizability-"+sanitize(k)+".html")
		if err := porcupine.VisualizePath(RegisterModel, infos[k], path); err == nil {
			res.Visualized = append(res.Visualized, path)
		}
	}
	res.Elapsed = time.Since(t0)
	return res, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
