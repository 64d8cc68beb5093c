package checker

import (
	"fmt"
	"sort"
	"time"

	"cairn/jepsen/history"
)

// SetResult is the set workload's verdict. Each element was added as its
// own key; at the end every attempted element (and some never-attempted
// probe keys) was read at ALL.
type SetResult struct {
	Verdict    string
	Attempted  int      // add invocations
	Acked      int      // adds that completed ok
	Failed     int      // definite failures
	Indefinite int      // info: may or may not have been applied
	Present    int      // elements the final reads found
	Lost       []string // acknowledged but missing
	Recovered  []string // indeterminate and present
	// Unexpected: found but never attempted (a probe key), or found with a
	// value that was never written to it.
	Unexpected []string
	// FailedPresent: a definite failure that was applied anyway.
	FailedPresent []string
	Unreadable    []string // the final read never succeeded
	Elapsed       time.Duration
}

// CheckSet reads the history: "add" operations (key = the element's key,
// value = the element) and "final-read" operations at the end (value nil
// when absent). Probe keys were never added; finding one is unexpected.
func CheckSet(ops []history.Op) (SetResult, error) {
	t0 := time.Now()
	pairs, err := history.Pairs(ops)
	if err != nil {
		return SetResult{}, err
	}
	type elem struct {
		value  string
		status string // ok, fail, info
	}
	adds := map[string]*elem{}
	final := map[string]*history.Op{} // key -> last successful final read
	finalTried := map[string]bool{}
	var res SetResult
	for _, p := range pairs {
		inv := p.Invoke
		typ := history.Info
		if p.Complete != nil {
			typ = p.Complete.Type
		}
		switch inv.F {
		case "add":
			if inv.Value == nil {
				return res, fmt.Errorf("add op %d has no value", inv.Index)
			}
			if _, dup := adds[inv.Key]; dup {
				return res, fmt.Errorf("element key %s added twice", inv.Key)
			}
			adds[inv.Key] = &elem{value: *inv.Value, status: typ}
			res.Attempted++
			switch typ {
			case history.OK:
				res.Acked++
			case history.Fail:
				res.Failed++
			default:
				res.Indefinite++
			}
		case "final-read":
			finalTried[inv.Key] = true
			if typ == history.OK {
				c := *p.Complete
				final[inv.Key] = &c
			}
		}
	}
	for key := range finalTried {
		r, ok := final[key]
		if !ok {
			res.Unreadable = append(res.Unreadable, key)
			continue
		}
		e := adds[key]
		if r.Value == nil {
			if e != nil && e.status == history.OK {
				res.Lost = append(res.Lost, key)
			}
			continue
		}
		res.Present++
		switch {
		case e == nil || *r.Value != e.value:
			res.Unexpected = append(res.Unexpected, fmt.Sprintf("%s=%s", key, *r.Value))
		case e.status == history.Info:
			res.Recovered = append(res.Recovered, key)
		case e.status == history.Fail:
			res.FailedPresent = append(res.FailedPresent, key)
		}
	}
	// every attempted element must have been read
	for key, e := range adds {
		if !finalTried[key] && e.status != history.Fail {
			res.Unreadable = append(res.Unreadable, key)
		}
	}
	for _, l := range [][]string{res.Lost, res.Recovered, res.Unexpected, res.FailedPresent, res.Unreadable} {
		sort.Strings(l)
	}
	switch {
	case len(res.Lost) > 0 || len(res.Unexpected) > 0 || len(res.FailedPresent) > 0:
		res.Verdict = Invalid
	case len(res.Unreadable) > 0:
		res.Verdict = Unknown
	default:
		res.Verdict = Valid
	}
	res.Elapsed = time.Since(t0)
	return res, nil
}
