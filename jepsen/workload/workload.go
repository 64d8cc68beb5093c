// Package workload generates client operations against Cairn and records
// them in a history.
//
// register: groups of PerKey processes share one key at a time and read or
// write it (50/50) with unique values; after OpsPerKey operations the group
// moves to a fresh key, so each key's history stays short enough for the
// linearizability checker. set: every process adds unique elements, each
// under its own key; some element numbers are skipped and later read as
// probes that must not exist.
//
// Every process has its own client (and causality token) whose first
// contact point is "its" node, so load spreads over the cluster; the
// client fails over to the other nodes when its node is unreachable.
// A request that failed definitely is recorded fail, one whose outcome is
// unknown info (client.Error.Indeterminate).
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cairn/jepsen/client"
	"cairn/jepsen/history"
)

// Config for a workload run.
type Config struct {
	Kind        string   // register | set
	Nodes       []string // client addresses, one per node
	Cluster     string
	Consistency client.Consistency
	Processes   int
	PerKey      int           // register: processes per key
	OpsPerKey   int           // register: operations before moving on
	Rate        float64       // target operations per second, all processes
	OpTimeout   time.Duration // per request
	Seed        int64
	KeyPrefix   string
	ProbeEvery  int // set: every Nth element number is a probe, never added
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Processes == 0 {
		c.Processes = 10
	}
	if c.PerKey == 0 {
		c.PerKey = 5
	}
	if c.OpsPerKey == 0 {
		c.OpsPerKey = 100
	}
	if c.Rate == 0 {
		c.Rate = 200
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = time.Second
	}
	if c.Consistency == 0 {
		c.Consistency = client.Quorum
	}
	if c.ProbeEvery == 0 {
		c.ProbeEvery = 50
	}
}

// Runner drives the processes of one workload.
type Runner struct {
	cfg     Config
	rec     *history.Recorder
	clients []*client.Client
	counter atomic.Int64 // unique values / element numbers
	groups  []*keyGroup

	mu       sync.Mutex
	keys     map[string]bool // every key operated on
	elements int64           // set: highest element number handed out
}

type keyGroup struct {
	mu    sync.Mutex
	id    int
	gen   int
	count int
}

// New makes the processes' clients.
func New(cfg Config, rec *history.Recorder) (*Runner, error) {
	cfg.Defaults()
	if cfg.Kind != "register" && cfg.Kind != "set" {
		return nil, fmt.Errorf("unknown workload %q (register or set)", cfg.Kind)
	}
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("no nodes")
	}
	r := &Runner{cfg: cfg, rec: rec, keys: map[string]bool{}}
	for p := 0; p < cfg.Processes; p++ {
		var points []string
		for i := range cfg.Nodes {
			points = append(points, cfg.Nodes[(p+i)%len(cfg.Nodes)])
		}
		c, err := client.New(client.Options{ContactPoints: points, Cluster: cfg.Cluster,
			ClientName: "jepsen-" + strconv.Itoa(p), Consistency: cfg.Consistency,
			Timeout: cfg.OpTimeout, ConnectTimeout: 500 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		r.clients = append(r.clients, c)
	}
	per := cfg.PerKey
	if per > cfg.Processes {
		per = cfg.Processes
	}
	for g := 0; g < (cfg.Processes+per-1)/per; g++ {
		r.groups = append(r.groups, &keyGroup{id: g})
	}
	return r, nil
}

// Close drops the clients.
func (r *Runner) Close() {
	for _, c := range r.clients {
		c.Close()
	}
}

// Keys lists every key the workload operated on.
func (r *Runner) Keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.keys))
	for k := range r.keys {
		out = append(out, k)
	}
	return out
}

func (r *Runner) noteKey(k string) {
	r.mu.Lock()
	r.keys[k] = true
	r.mu.Unlock()
}

// Run runs every process until ctx is done; each finishes the operation it
// has in flight (bounded by the request timeout).
func (r *Runner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for p := range r.clients {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			r.process(ctx, p)
		}(p)
	}
	wg.Wait()
}

func (r *Runner) process(ctx context.Context, p int) {
	rng := rand.New(rand.NewSource(r.cfg.Seed*1000003 + int64(p)))
	mean := time.Duration(float64(r.cfg.Processes) / r.cfg.Rate * float64(time.Second))
	for {
		think := time.Duration(rng.Int63n(int64(2*mean) + 1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(think):
		}
		if ctx.Err() != nil {
			return
		}
		switch r.cfg.Kind {
		case "register":
			r.registerOp(p, rng)
		case "set":
			r.addOp(p)
		}
	}
}

// Outcome classifies an error: fail when the request certainly did
// nothing, info when it may have.
func Outcome(err error) string {
	if err == nil {
		return history.OK
	}
	var e *client.Error
	if errors.As(err, &e) && !e.Indeterminate() {
		return history.Fail
	}
	return history.Info
}

func (r *Runner) groupKey(p int) string {
	g := r.groups[p/r.perKey()]
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.count >= r.cfg.OpsPerKey {
		g.gen++
		g.count = 0
	}
	g.count++
	return fmt.Sprintf("%sr%d-%d", r.cfg.KeyPrefix, g.id, g.gen)
}

func (r *Runner) perKey() int {
	if r.cfg.PerKey > r.cfg.Processes {
		return r.cfg.Processes
	}
	return r.cfg.PerKey
}

func (r *Runner) registerOp(p int, rng *rand.Rand) {
	key := r.groupKey(p)
	r.noteKey(key)
	c := r.clients[p]
	if rng.Intn(2) == 0 {
		r.rec.Add(history.Op{Process: p, Type: history.Invoke, F: "read", Key: key})
		res, err := c.Get([]byte(key), nil)
		op := history.Op{Process: p, Type: Outcome(err), F: "read", Key: key, Node: res.Node}
		if err != nil {
			op.Error = err.Error()
			op.Node = errNode(err)
		} else {
			op.TS = res.Timestamp
			if res.Found {
				op.Value = history.Str(string(res.Value))
			}
		}
		r.rec.Add(op)
		return
	}
	v := strconv.FormatInt(r.counter.Add(1), 10)
	r.rec.Add(history.Op{Process: p, Type: history.Invoke, F: "write", Key: key, Value: history.Str(v)})
	res, err := c.Put([]byte(key), []byte(v), nil)
	op := history.Op{Process: p, Type: Outcome(err), F: "write", Key: key, Value: history.Str(v),
		Node: res.Node, TS: res.Timestamp}
	if err != nil {
		op.Error = err.Error()
		op.Node = errNode(err)
	}
	r.rec.Add(op)
}

func errNode(err error) string {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Node
	}
	return ""
}

// ElementKey is the key of set element n.
func (r *Runner) ElementKey(n int64) string { return fmt.Sprintf("%ss%d", r.cfg.KeyPrefix, n) }

// ElementValue is the value of set element n.
func ElementValue(n int64) string { return "e" + strconv.FormatInt(n, 10) }

func (r *Runner) addOp(p int) {
	var n int64
	for {
		n = r.counter.Add(1)
		if n%int64(r.cfg.ProbeEvery) != 0 {
			break
		}
	}
	r.mu.Lock()
	if n > r.elements {
		r.elements = n
	}
	r.mu.Unlock()
	key, val := r.ElementKey(n), ElementValue(n)
	r.noteKey(key)
	r.rec.Add(history.Op{Process: p, Type: history.Invoke, F: "add", Key: key, Value: history.Str(val)})
	res, err := r.clients[p].Put([]byte(key), []byte(val), nil)
	op := history.Op{Process: p, Type: Outcome(err), F: "add", Key: key, Value: history.Str(val),
		Node: res.Node, TS: res.Timestamp}
	if err != nil {
		op.Error = err.Error()
		op.Node = errNode(err)
	}
	r.rec.Add(op)
}

// Probes are the set's never-added element keys up to the highest element
// handed out.
func (r *Runner) Probes() []string {
	r.mu.Lock()
	max := r.elements
	r.mu.Unlock()
	var out []string
	for n := int64(r.cfg.ProbeEvery); n <= max; n += int64(r.cfg.ProbeEvery) {
		out = append(out, r.ElementKey(n))
	}
	return out
}
