// Package history records what clients did: every operation's invocation
// and completion, as Jepsen does, one JSON object per line.
//
//	{"index":12,"process":3,"type":"invoke","f":"write","key":"r-0-4","value":"17","time":1830020311}
//	{"index":13,"process":3,"type":"ok","f":"write","key":"r-0-4","value":"17","time":1834511020,"node":"127.0.5.2:7070","ts":117...}
//
// type is invoke, ok (it happened), fail (it certainly did not happen) or
// info (it may or may not have happened, now or later). time is in
// nanoseconds since the start of the run (monotonic). A process has at
// most one operation outstanding; its completion follows its invocation.
// Faults appear as process -1 ("nemesis") with type info.
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Operation types.
const (
	Invoke = "invoke"
	OK     = "ok"
	Fail   = "fail"
	Info   = "info"
)

// NemesisProcess is the process number of fault events.
const NemesisProcess = -1

// Op is one history event.
type Op struct {
	Index   int     `json:"index"`
	Process int     `json:"process"`
	Type    string  `json:"type"`
	F       string  `json:"f"`
	Key     string  `json:"key,omitempty"`
	Value   *string `json:"value"`
	Time    int64   `json:"time"`
	Node    string  `json:"node,omitempty"`
	TS      uint64  `json:"ts,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// Str makes a value pointer.
func Str(s string) *string { return &s }

// ValueString prints a value ("nil" for none).
func (o Op) ValueString() string {
	if o.Value == nil {
		return "nil"
	}
	return *o.Value
}

// Recorder appends ops to memory and to a JSON-lines file.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
	f     *os.File
	w     *bufio.Writer
	err   error
}

// NewRecorder writes to path (truncating it); times count from now.
func NewRecorder(path string) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &Recorder{start: time.Now(), f: f, w: bufio.NewWriterSize(f, 1<<16)}, nil
}

// Start is the time zero of the history.
func (r *Recorder) Start() time.Time { return r.start }

// Now is the current history time.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Add records op (its Index and, when zero, its Time are set) and returns
// it.
func (r *Recorder) Add(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	if op.Time == 0 {
		op.Time = int64(time.Since(r.start))
	}
	op.Index = len(r.ops)
	r.ops = append(r.ops, op)
	if r.err == nil {
		b, err := json.Marshal(op)
		if err == nil {
			b = append(b, '\n')
			_, err = r.w.Write(b)
		}
		r.err = err
	}
	return op
}

// Ops returns a copy of everything recorded so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Flush writes buffered lines to the file.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = r.w.Flush()
	}
	return r.err
}

// Close flushes and closes the file.
func (r *Recorder) Close() error {
	err := r.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read loads a history file.
func Read(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f)
}

// Decode reads JSON lines.
func Decode(rd io.Reader) ([]Op, error) {
	var ops []Op
	dec := json.NewDecoder(rd)
	for {
		var op Op
		if err := dec.Decode(&op); err == io.EOF {
			return ops, nil
		} else if err != nil {
			return nil, fmt.Errorf("history line %d: %v", len(ops)+1, err)
		}
		ops = append(ops, op)
	}
}

// Pair is an invocation with its completion (Complete nil if the history
// ends before it completed: treat as info).
type Pair struct {
	Invoke   Op
	Complete *Op
}

// Pairs matches each invocation with its process's next completion, in
// invocation order. It fails on a history where a process invokes twice
// without completing, or completes what it never invoked.
func Pairs(ops []Op) ([]Pair, error) {
	open := map[int]int{} // process -> index into out
	var out []Pair
	for _, op := range ops {
		if op.Process == NemesisProcess {
			continue
		}
		switch op.Type {
		case Invoke:
			if _, busy := open[op.Process]; busy {
				return nil, fmt.Errorf("process %d invoked op %d with one outstanding", op.Process, op.Index)
			}
			open[op.Process] = len(out)
			out = append(out, Pair{Invoke: op})
		case OK, Fail, Info:
			i, busy := open[op.Process]
			if !busy {
				return nil, fmt.Errorf("process %d completed op %d it never invoked", op.Process, op.Index)
			}
			c := op
			out[i].Complete = &c
			delete(open, op.Process)
		default:
			return nil, fmt.Errorf("op %d has unknown type %q", op.Index, op.Type)
		}
	}
	return out, nil
}
