// Package runner runs one Jepsen-style test of Cairn: bring up a cluster,
// run a workload while a nemesis injects faults and quiet periods
// alternate, heal everything, wait for hints to drain, check that replicas
// converged, do final reads, and judge the history.
//
//	setup --> cluster healthy? --no--> INVALID
//	  | yes
//	  v
//	warmup (quiet) --> [fault, quiet]* --> final heal --> recovery (workload
//	still running) --> workload stops --> cluster healthy again? --> hints
//	drained? --> convergence (each replica read directly) --> final reads
//	--> stop cluster --> checkers --> RESULT: PASS | FAIL | INVALID
//
// Faults are always undone: at the final heal, and again in Teardown,
// which runs on every exit path, including a panic or an interrupt.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cairn/jepsen/checker"
	"cairn/jepsen/client"
	"cairn/jepsen/cluster"
	"cairn/jepsen/history"
	"cairn/jepsen/nemesis"
	"cairn/jepsen/workload"
)

// Results of a run.
const (
	Pass    = "PASS"
	Fail    = "FAIL"
	Invalid = "INVALID"
)

// Config describes one run.
type Config struct {
	Name        string             `json:"name"`
	Workload    string             `json:"workload"` // register | set
	Nemesis     string             `json:"nemesis"`
	Consistency client.Consistency `json:"consistency"`
	// Expect: "" (the properties must hold) or "violation" (a negative
	// control: the register checker must find a violation).
	Expect      string        `json:"expect,omitempty"`
	Seed        int64         `json:"seed"`
	Duration    time.Duration `json:"duration"` // faults and quiet periods
	Warmup      time.Duration `json:"warmup"`   // quiet before the first fault
	FaultTime   time.Duration `json:"fault_time"`
	QuietTime   time.Duration `json:"quiet_time"`
	Recovery    time.Duration `json:"recovery"` // workload after the final heal
	Processes   int           `json:"processes"`
	PerKey      int           `json:"per_key"`
	OpsPerKey   int           `json:"ops_per_key"`
	Rate        float64       `json:"rate"`
	OpTimeout   time.Duration `json:"op_timeout"`
	MinOKBefore int           `json:"min_ok_before_faults"`
	MaxOffset   time.Duration `json:"max_clock_offset"`
	Dir         string        `json:"dir"` // the run's directory
	// How long the checks after the run may wait.
	HealthyTimeout time.Duration `json:"healthy_timeout"`
	HintsTimeout   time.Duration `json:"hints_timeout"`
	NoRepair       bool          `json:"no_repair"` // judge convergence without cairn repair
	CheckTimeout   time.Duration `json:"check_timeout_per_key"`
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Consistency == 0 {
		c.Consistency = client.Quorum
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = 5 * time.Second
	}
	if c.FaultTime == 0 {
		c.FaultTime = 8 * time.Second
	}
	if c.QuietTime == 0 {
		c.QuietTime = 4 * time.Second
	}
	if c.Recovery == 0 {
		c.Recovery = 5 * time.Second
	}
	if c.MinOKBefore == 0 {
		c.MinOKBefore = 20
	}
	if c.MaxOffset == 0 {
		c.MaxOffset = 500 * time.Millisecond
	}
	if c.HealthyTimeout == 0 {
		c.HealthyTimeout = 60 * time.Second
	}
	if c.HintsTimeout == 0 {
		c.HintsTimeout = 60 * time.Second
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 60 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano() % 1000000000
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("%s-%s-%s", c.Workload, c.Nemesis, strings.ToLower(c.Consistency.String()))
	}
}

// Event is one line of the fault timeline.
type Event struct {
	At   time.Duration `json:"at"`
	What string        `json:"what"`
}

// Counts of completions by type.
type Counts struct {
	OK, Fail, Info int
}

func (c Counts) Total() int { return c.OK + c.Fail + c.Info }

// Check is one checker's verdict.
type Check struct {
	Name    string        `json:"name"`
	Verdict string        `json:"verdict"` // checker.Valid / Invalid / Unknown
	Detail  string        `json:"detail"`
	Elapsed time.Duration `json:"elapsed"`
}

// Report is the outcome of a run.
type Report struct {
	Config      Config                  `json:"config"`
	Cluster     string                  `json:"cluster"`
	Result      string                  `json:"result"`
	Reasons     []string                `json:"reasons,omitempty"`
	Timeline    []Event                 `json:"timeline"`
	Counts      map[string]Counts       `json:"counts"` // before / during / after
	ByF         map[string]Counts       `json:"by_f"`
	Checks      []Check                 `json:"checks"`
	Register    *checker.RegisterResult `json:"register,omitempty"`
	Set         *checker.SetResult      `json:"set,omitempty"`
	Convergence *ConvergenceResult      `json:"convergence,omitempty"`
	// before the repair step: what hints and read repair achieved alone
	ConvergenceAlone *ConvergenceResult `json:"convergence_without_repair,omitempty"`
	History          string             `json:"history"`
	Elapsed          time.Duration      `json:"elapsed"`
	faultStart       int64
	healAt           int64
}

// Ops is the number of client operations (completions) in the history.
func (r *Report) Ops() int {
	n := 0
	for _, c := range r.Counts {
		n += c.Total()
	}
	return n
}

// run is the state of one run.
type run struct {
	cfg Config
	c   cluster.Cluster
	rec *history.Recorder
	rep *Report
	out io.Writer
	nem nemesis.Nemesis
	rng *rand.Rand
	wl  *workload.Runner
	t0  time.Time
	mu  sync.Mutex
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.out, "[%7.1fs] %s\n", time.Since(r.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (r *run) event(what string) {
	at := time.Duration(r.rec.Now())
	r.mu.Lock()
	r.rep.Timeline = append(r.rep.Timeline, Event{At: at, What: what})
	r.mu.Unlock()
	r.rec.Add(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "nemesis",
		Value: history.Str(what)})
	r.logf("nemesis: %s", what)
}

func (r *run) invalid(why string) {
	r.rep.Reasons = append(r.rep.Reasons, "INVALID: "+why)
	if r.rep.Result != Fail {
		r.rep.Result = Invalid
	}
}

func (r *run) fail(why string) {
	r.rep.Reasons = append(r.rep.Reasons, "FAIL: "+why)
	r.rep.Result = Fail
}

// Run executes one test on cluster c and writes its report. The cluster is
// torn down (every fault undone, every node stopped) before Run returns,
// whatever happens; an interrupt (SIGINT/SIGTERM) ends the run early and
// still tears down.
func Run(cfg Config, c cluster.Cluster, out io.Writer) (rep *Report, err error) {
	cfg.Defaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	rec, err := history.NewRecorder(filepath.Join(cfg.Dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer rec.Close()
	r := &run{cfg: cfg, c: c, rec: rec, out: out, rng: rand.New(rand.NewSource(cfg.Seed)), t0: time.Now(),
		rep: &Report{Config: cfg, Cluster: c.Kind(), Result: Pass}}
	r.rep.History = filepath.Join(cfg.Dir, "history.jsonl")
	if r.nem, err = nemesis.New(cfg.Nemesis, cfg.MaxOffset); err != nil {
		return nil, err
	}
	if b, err := json.MarshalIndent(cfg, "", "  "); err == nil {
		os.WriteFile(filepath.Join(cfg.Dir, "config.json"), b, 0o644)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var interrupted atomic.Bool
	go func() {
		select {
		case s := <-sigs:
			interrupted.Store(true)
			r.logf("%v: ending the run early; undoing every fault", s)
			cancel()
		case <-ctx.Done():
		}
	}()

	torn := false
	teardown := func() {
		if torn {
			return
		}
		torn = true
		if err := c.Teardown(); err != nil {
			r.logf("teardown: %v", err)
			r.rep.Reasons = append(r.rep.Reasons, "teardown: "+err.Error())
		}
	}
	defer func() {
		if p := recover(); p != nil {
			teardown()
			panic(p)
		}
		teardown()
		r.rep.Elapsed = time.Since(r.t0)
		if interrupted.Load() {
			r.invalid("interrupted")
		}
		r.writeReport()
		rep = r.rep
	}()

	r.execute(ctx, teardown)
	return r.rep, nil
}

func (r *run) execute(ctx context.Context, teardown func()) {
	cfg := r.cfg
	r.logf("run %s: workload %s, nemesis %s, %s, seed %d, %s cluster of %d nodes; dir %s",
		cfg.Name, cfg.Workload, cfg.Nemesis, cfg.Consistency, cfg.Seed, r.c.Kind(), len(r.c.Nodes()), cfg.Dir)
	if r.nem != nil && r.nem.NeedsPartitions() {
		if err := r.c.PartitionCheck(); err != nil {
			r.logf("PARTITIONS ARE NOT POSSIBLE HERE: %v", err)
			r.invalid("network partitions cannot be made here: " + err.Error())
			return
		}
		r.logf("partition self-test passed: a cut blocks a node's traffic and healing restores it")
	}
	if err := r.c.Start(); err != nil {
		r.invalid("cluster did not start: " + err.Error())
		return
	}
	if err := r.waitHealthy(ctx, r.cfg.HealthyTimeout); err != nil {
		r.invalid("cluster never became healthy: " + err.Error())
		return
	}
	r.logf("cluster healthy: every node sees every other up and coordinates QUORUM writes and reads")
	if r.nem != nil && r.nem.NeedsClocks() {
		err := r.c.ClockCheck()
		if err == nil {
			err = r.clockSelfTest(ctx)
		}
		if err != nil {
			r.logf("CLOCKS CANNOT BE SKEWED HERE: %v", err)
			r.invalid("clock skew cannot be injected here: " + err.Error())
			return
		}
	}
	var addrs []string
	for _, n := range r.c.Nodes() {
		addrs = append(addrs, n.ClientAddr)
	}
	wl, err := workload.New(workload.Config{Kind: cfg.Workload, Nodes: addrs, Cluster: clusterName(r.c),
		Consistency: cfg.Consistency, Processes: cfg.Processes, PerKey: cfg.PerKey, OpsPerKey: cfg.OpsPerKey,
		Rate: cfg.Rate, OpTimeout: cfg.OpTimeout, Seed: cfg.Seed}, r.rec)
	if err != nil {
		r.invalid(err.Error())
		return
	}
	r.wl = wl
	defer wl.Close()

	wctx, stopWorkload := context.WithCancel(ctx)
	defer stopWorkload()
	wdone := make(chan struct{})
	go func() {
		wl.Run(wctx)
		close(wdone)
	}()
	r.event("workload started")
	r.schedule(ctx)
	// final heal: undo everything, whatever the nemesis did
	r.heal()
	r.rep.healAt = r.rec.Now()
	r.event("final heal: partitions healed, processes resumed, clocks reset, killed nodes restarted")
	sleep(ctx, cfg.Recovery)
	stopWorkload()
	<-wdone
	r.event("workload stopped")
	if ctx.Err() != nil {
		return
	}
	r.afterRun(ctx)
	// stop the cluster cleanly before judging: a node that cannot drain
	// is worth knowing about
	if err := r.c.Stop(); err != nil {
		r.logf("stopping the cluster: %v", err)
		r.rep.Reasons = append(r.rep.Reasons, "note: stopping the cluster: "+err.Error())
	}
	teardown()
	r.judge()
}

// clockSelfTest sets the first node's clock 400 ms ahead (within the
// default max_clock_offset), has it stamp a write, and checks that the
// stamp is ahead of real time by about that much -- proof that the node
// really reads the skewed clock -- then puts the clock back.
func (r *run) clockSelfTest(ctx context.Context) error {
	n := r.c.Nodes()[0]
	const skew = 400 * time.Millisecond
	if err := r.c.SetClock(n.Name, skew); err != nil {
		return err
	}
	defer r.c.SetClock(n.Name, 0)
	sleep(ctx, 100*time.Millisecond)
	cl, err := nodeClient(n, clusterName(r.c))
	if err != nil {
		return err
	}
	defer cl.Close()
	before := time.Now().UnixMilli()
	res, err := cl.Put([]byte("jepsen-clock-test"), []byte("x"), &client.ReqOpts{Consistency: client.One})
	if err != nil {
		return fmt.Errorf("clock self-test write through %s: %v", n.Name, err)
	}
	ahead := int64(res.Timestamp>>16) - before
	if ahead < int64(skew/time.Millisecond)*3/4 {
		return fmt.Errorf("%s's clock was set %v ahead but it stamped a write only %d ms ahead of real time", n.Name, skew, ahead)
	}
	r.logf("clock self-test passed: with its clock set %v ahead, %s stamped a write %d ms ahead of real time", skew, n.Name, ahead)
	r.c.SetClock(n.Name, 0)
	sleep(ctx, 600*time.Millisecond) // the HLC's lead runs out
	return nil
}

func clusterName(c cluster.Cluster) string {
	if n, ok := c.(interface{ ClusterName() string }); ok {
		return n.ClusterName()
	}
	return "jepsen"
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// schedule alternates faults and quiet periods for cfg.Duration after the
// warmup.
func (r *run) schedule(ctx context.Context) {
	cfg := r.cfg
	sleep(ctx, cfg.Warmup)
	r.rep.faultStart = r.rec.Now()
	if r.nem == nil {
		sleep(ctx, cfg.Duration)
		return
	}
	end := time.Now().Add(cfg.Duration)
	cuts, noticed := 0, 0
	defer func() {
		if cuts > 0 && noticed == 0 && ctx.Err() == nil {
			r.invalid(fmt.Sprintf("none of the %d partitions was noticed by the cluster: the faults had no visible effect", cuts))
		}
	}()
	for ctx.Err() == nil && time.Now().Before(end) {
		what, err := r.nem.Start(r.c, r.rng)
		if err != nil {
			r.event("fault failed to start: " + err.Error())
			r.invalid("a fault could not be injected: " + err.Error())
			return
		}
		r.event("start " + what)
		isCut := strings.HasPrefix(what, "partition")
		if isCut {
			cuts++
		}
		octx, stopObserving := context.WithCancel(ctx)
		seen := make(chan string, 1)
		go func() { seen <- r.observe(octx) }()
		left := time.Until(end)
		sleep(ctx, minDur(cfg.FaultTime, left))
		stopObserving()
		if obs := <-seen; obs != "" {
			r.event("observed: " + obs)
			if isCut {
				noticed++
			}
		} else {
			r.event("observed: no node saw another one down during this fault")
		}
		what, err = r.nem.Stop(r.c)
		if err != nil {
			r.event("fault failed to stop: " + err.Error())
		} else {
			r.event("stop: " + what)
		}
		if left = time.Until(end); left <= 0 {
			break
		}
		sleep(ctx, minDur(cfg.QuietTime, left))
	}
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// observe polls every node's view of the cluster until ctx ends and
// returns the first sign of the fault in it ("n1 sees n3 down after
// 2.1s"), or "" if none.
func (r *run) observe(ctx context.Context) string {
	t0 := time.Now()
	for ctx.Err() == nil {
		type view struct {
			from string
			down []string
		}
		views := make(chan view, len(r.c.Nodes()))
		for _, n := range r.c.Nodes() {
			go func(n cluster.Node) {
				v := view{from: n.Name}
				defer func() { views <- v }()
				if !r.c.Running(n.Name) {
					return
				}
				cl, err := nodeClient(n, clusterName(r.c))
				if err != nil {
					return
				}
				defer cl.Close()
				ring, err := cl.Ring(nil)
				if err != nil {
					return
				}
				for _, m := range ring.Nodes {
					if !m.Up || m.Liveness != 0 {
						state := "down"
						if m.Up {
							state = "suspect"
						}
						v.down = append(v.down, m.Name+" "+state)
					}
				}
			}(n)
		}
		var found []string
		for range r.c.Nodes() {
			v := <-views
			if len(v.down) > 0 {
				sort.Strings(v.down)
				found = append(found, v.from+" sees "+strings.Join(v.down, ", "))
			}
		}
		if len(found) > 0 && ctx.Err() == nil {
			sort.Strings(found)
			return fmt.Sprintf("after %.1fs %s", time.Since(t0).Seconds(), strings.Join(found, "; "))
		}
		sleep(ctx, 300*time.Millisecond)
	}
	return ""
}

// heal undoes every fault the cluster knows of.
func (r *run) heal() {
	if err := r.c.Heal(); err != nil {
		r.logf("heal: %v", err)
	}
	r.c.ResumeAll()
	r.c.ResetClocks()
	for _, n := range r.c.Nodes() {
		if !r.c.Running(n.Name) {
			if err := r.c.StartNode(n.Name); err != nil {
				r.logf("restart %s: %v", n.Name, err)
			}
		}
	}
}

// ---- cluster state -----------------------------------------------------

func nodeClient(n cluster.Node, name string) (*client.Client, error) {
	return client.New(client.Options{ContactPoints: []string{n.ClientAddr}, Cluster: name,
		Timeout: 2 * time.Second, ConnectTimeout: time.Second, ClientName: "jepsen-admin"})
}

// health says what is not yet healthy in the nodes' views ("" when every
// node is ready and sees every other up).
func (r *run) health() string {
	var bad []string
	nodes := r.c.Nodes()
	for _, n := range nodes {
		if !r.c.Running(n.Name) {
			bad = append(bad, n.Name+" is not running")
			continue
		}
		if !cluster.Ready(n, time.Second) {
			bad = append(bad, n.Name+" is not ready")
			continue
		}
		cl, err := nodeClient(n, clusterName(r.c))
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		ring, err := cl.Ring(nil)
		cl.Close()
		if err != nil {
			bad = append(bad, n.Name+": "+err.Error())
			continue
		}
		up := map[string]bool{}
		for _, m := range ring.Nodes {
			if m.Up && m.Liveness == 0 {
				up[m.Name] = true
			}
		}
		var down []string
		for _, m := range nodes {
			if !up[m.Name] {
				down = append(down, m.Name)
			}
		}
		if len(down) > 0 {
			bad = append(bad, fmt.Sprintf("%s sees %s down", n.Name, strings.Join(down, ",")))
		}
	}
	return strings.Join(bad, "; ")
}

// serves checks that every node coordinates QUORUM writes and reads: a few
// probe keys per node (spread over the ring, so every replica set is
// likely touched), written and read back through that node alone. A node
// can look up to its peers and still be unable to serve (its clock, for
// one, may be far ahead of theirs). Returns what failed, "" when nothing.
func (r *run) serves(round int) string {
	var bad []string
	for _, n := range r.c.Nodes() {
		cl, err := client.New(client.Options{ContactPoints: []string{n.ClientAddr}, Cluster: clusterName(r.c),
			Timeout: time.Second, ConnectTimeout: time.Second, ClientName: "jepsen-health"})
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		for i := 0; i < 8; i++ {
			key := []byte(fmt.Sprintf("jepsen-health-%s-%d", n.Name, i))
			val := []byte(fmt.Sprintf("%d", round))
			if _, err := cl.Put(key, val, &client.ReqOpts{Consistency: client.Quorum}); err != nil {
				bad = append(bad, fmt.Sprintf("QUORUM write through %s: %v", n.Name, err))
				break
			}
			res, err := cl.Get(key, &client.ReqOpts{Consistency: client.Quorum})
			if err != nil || string(res.Value) != string(val) {
				bad = append(bad, fmt.Sprintf("QUORUM read through %s: %q %v", n.Name, res.Value, err))
				break
			}
		}
		cl.Close()
	}
	return strings.Join(bad, "; ")
}

func (r *run) waitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for round := 0; ; round++ {
		h := r.health()
		if h == "" {
			h = r.serves(round)
		}
		if h == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.New(h)
		}
		sleep(ctx, 250*time.Millisecond)
	}
}

// hintsPending sums INFO hints_pending over the nodes ("" errors when all
// answered).
func (r *run) hintsPending() (uint64, string) {
	var total uint64
	var errs []string
	for _, n := range r.c.Nodes() {
		cl, err := nodeClient(n, clusterName(r.c))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		info, err := cl.Info()
		cl.Close()
		if err != nil {
			errs = append(errs, n.Name+": "+err.Error())
			continue
		}
		var v uint64
		fmt.Sscan(info["hints_pending"], &v)
		total += v
	}
	return total, strings.Join(errs, "; ")
}

// afterRun: recovery, hints, convergence, final reads.
func (r *run) afterRun(ctx context.Context) {
	t0 := time.Now()
	err := r.waitHealthy(ctx, r.cfg.HealthyTimeout)
	ch := Check{Name: "recovery", Verdict: checker.Valid, Elapsed: time.Since(t0),
		Detail: fmt.Sprintf("every node sees every other up and coordinates QUORUM writes and reads %.1fs after the workload stopped", time.Since(t0).Seconds())}
	if err != nil {
		ch.Verdict = checker.Invalid
		ch.Detail = fmt.Sprintf("not healthy %v after the final heal: %v", r.cfg.HealthyTimeout, err)
	}
	r.rep.Checks = append(r.rep.Checks, ch)
	r.logf("recovery: %s (%s)", ch.Verdict, ch.Detail)

	t0 = time.Now()
	var pending uint64
	var perr string
	for {
		pending, perr = r.hintsPending()
		if pending == 0 && perr == "" || time.Since(t0) > r.cfg.HintsTimeout || ctx.Err() != nil {
			break
		}
		sleep(ctx, 500*time.Millisecond)
	}
	ch = Check{Name: "hints-drained", Verdict: checker.Valid, Elapsed: time.Since(t0),
		Detail: fmt.Sprintf("no hints pending on any node after %.1fs", time.Since(t0).Seconds())}
	if pending > 0 || perr != "" {
		ch.Verdict = checker.Invalid
		ch.Detail = fmt.Sprintf("%d hints still pending after %v", pending, r.cfg.HintsTimeout)
		if perr != "" {
			ch.Detail += " (unanswered: " + perr + ")"
		}
	}
	r.rep.Checks = append(r.rep.Checks, ch)
	r.logf("hints: %s (%s)", ch.Verdict, ch.Detail)

	// convergence before the final reads: those repair what they read.
	// First without help (what hints and read repair achieved alone: kept
	// in the report), then after an anti-entropy repair on every node --
	// what an operator runs after crashes -- which is the verdict.
	keys := r.wl.Keys()
	sort.Strings(keys)
	alone := CheckConvergence(r.c, clusterName(r.c), keys)
	r.rep.ConvergenceAlone = &alone
	r.logf("convergence without repair: %s (%s)", alone.Verdict, alone.Summary())
	if !r.cfg.NoRepair {
		ch = r.repairAll(ctx)
		r.rep.Checks = append(r.rep.Checks, ch)
		r.logf("repair: %s (%s)", ch.Verdict, ch.Detail)
	}
	conv := CheckConvergence(r.c, clusterName(r.c), keys)
	r.rep.Convergence = &conv
	r.rep.Checks = append(r.rep.Checks, Check{Name: "convergence", Verdict: conv.Verdict,
		Detail: conv.Summary(), Elapsed: conv.Elapsed})
	r.logf("convergence: %s (%s)", conv.Verdict, conv.Summary())

	r.finalReads(ctx, keys)
}

// repairAll runs `repair` on every node in turn and waits for each.
func (r *run) repairAll(ctx context.Context) Check {
	t0 := time.Now()
	ch := Check{Name: "repair", Verdict: checker.Valid}
	var moved uint64
	var notes []string
	for _, n := range r.c.Nodes() {
		cl, err := nodeClient(n, clusterName(r.c))
		if err != nil {
			ch.Verdict = checker.Invalid
			notes = append(notes, n.Name+": "+err.Error())
			continue
		}
		_, err = cl.Admin("repair", "")
		state := "running"
		var info map[string]string
		for err == nil && state == "running" && ctx.Err() == nil &&
			time.Since(t0) < r.cfg.HealthyTimeout+2*time.Minute {
			sleep(ctx, 200*time.Millisecond)
			info, err = cl.Info()
			if err == nil {
				state = info["repair_state"]
			}
		}
		cl.Close()
		if err != nil || state != "done" {
			ch.Verdict = checker.Invalid
			if err != nil {
				notes = append(notes, n.Name+": "+err.Error())
			} else {
				notes = append(notes, n.Name+": "+state+": "+info["repair_result"])
			}
			continue
		}
		var in uint64
		fmt.Sscan(info["repair_keys_in"], &in)
		moved += in
	}
	ch.Elapsed = time.Since(t0)
	ch.Detail = fmt.Sprintf("every node repaired in %.1fs; %d cells copied", ch.Elapsed.Seconds(), moved)
	if len(notes) > 0 {
		ch.Detail = strings.Join(notes, "; ")
	}
	r.event(fmt.Sprintf("repair: %s", ch.Detail))
	return ch
}

// finalReads reads every key once more through the healed cluster: the
// register's keys at the run's consistency level, the set's elements and
// probes at ALL. Each attempt is in the history; failures are retried.
func (r *run) finalReads(ctx context.Context, keys []string) {
	var addrs []string
	for _, n := range r.c.Nodes() {
		addrs = append(addrs, n.ClientAddr)
	}
	f, cl := "read", r.cfg.Consistency
	if r.cfg.Workload == "set" {
		f, cl = "final-read", client.All
		keys = append(keys, r.wl.Probes()...)
	}
	cli, err := client.New(client.Options{ContactPoints: addrs, Cluster: clusterName(r.c), Consistency: cl,
		Timeout: 2 * time.Second, ConnectTimeout: time.Second, ClientName: "jepsen-final"})
	if err != nil {
		return
	}
	defer cli.Close()
	proc := 100000 // a process number no worker uses
	failed, unread := 0, 0
	deadline := time.Now().Add(3 * time.Minute)
	for _, k := range keys {
		if time.Now().After(deadline) {
			unread++
			continue
		}
		for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
			r.rec.Add(history.Op{Process: proc, Type: history.Invoke, F: f, Key: k})
			res, err := cli.Get([]byte(k), nil)
			op := history.Op{Process: proc, Type: workload.Outcome(err), F: f, Key: k, Node: res.Node, TS: res.Timestamp}
			if err != nil {
				op.Error = err.Error()
			} else if res.Found {
				op.Value = history.Str(string(res.Value))
			}
			r.rec.Add(op)
			if err == nil {
				break
			}
			failed++
			sleep(ctx, 200*time.Millisecond)
		}
	}
	msg := fmt.Sprintf("final reads of %d keys at %s done (%d failed attempts)", len(keys), cl, failed)
	if unread > 0 {
		msg += fmt.Sprintf("; gave up after 3 minutes with %d keys not read", unread)
	}
	r.event(msg)
}

// ---- judging -------------------------------------------------------------

func (r *run) judge() {
	ops := r.rec.Ops()
	r.rec.Flush()
	r.count(ops)
	cfg := r.cfg
	before := r.rep.Counts["before"]
	if before.OK < cfg.MinOKBefore {
		r.invalid(fmt.Sprintf("only %d successful operations before the first fault (need %d)", before.OK, cfg.MinOKBefore))
	}
	switch cfg.Workload {
	case "register":
		res, err := checker.CheckRegisters(ops, cfg.CheckTimeout, 2, cfg.Dir, 5)
		if err != nil {
			r.invalid("register checker: " + err.Error())
			break
		}
		r.rep.Register = &res
		detail := fmt.Sprintf("%d keys, %d operations (%d indeterminate writes), longest key %d ops",
			res.Keys, res.Operations, res.InfoWrites, res.LongestKey)
		if len(res.IllegalKeys) > 0 {
			detail += fmt.Sprintf("; NOT linearizable: %s", strings.Join(firstN(res.IllegalKeys, 10), ", "))
		}
		if len(res.UnknownKeys) > 0 {
			detail += fmt.Sprintf("; undecided in %v: %s", cfg.CheckTimeout, strings.Join(firstN(res.UnknownKeys, 10), ", "))
		}
		r.rep.Checks = append(r.rep.Checks, Check{Name: "linearizable", Verdict: res.Verdict, Detail: detail, Elapsed: res.Elapsed})
	case "set":
		res, err := checker.CheckSet(ops)
		if err != nil {
			r.invalid("set checker: " + err.Error())
			break
		}
		r.rep.Set = &res
		detail := fmt.Sprintf("%d attempted, %d acknowledged, %d failed, %d indeterminate; %d present: lost %d, recovered %d, unexpected %d, failed-but-present %d, unreadable %d",
			res.Attempted, res.Acked, res.Failed, res.Indefinite, res.Present, len(res.Lost), len(res.Recovered),
			len(res.Unexpected), len(res.FailedPresent), len(res.Unreadable))
		for _, l := range []struct {
			name string
			keys []string
		}{{"lost", res.Lost}, {"unexpected", res.Unexpected}, {"failed-but-present", res.FailedPresent}, {"unreadable", res.Unreadable}} {
			if len(l.keys) > 0 {
				detail += fmt.Sprintf("; %s: %s", l.name, strings.Join(firstN(l.keys, 10), ", "))
			}
		}
		r.rep.Checks = append(r.rep.Checks, Check{Name: "set", Verdict: res.Verdict, Detail: detail, Elapsed: res.Elapsed})
	}
	if crashes := crashed(r.c); len(crashes) > 0 {
		r.rep.Checks = append(r.rep.Checks, Check{Name: "no-crash", Verdict: checker.Invalid,
			Detail: strings.Join(crashes, "; ")})
	}
	for _, ch := range r.rep.Checks {
		negative := cfg.Expect == "violation" && ch.Name == "linearizable"
		switch {
		case negative && ch.Verdict == checker.Invalid:
			// the negative control bit, as it must
		case negative && ch.Verdict == checker.Valid:
			r.fail("negative control: the register checker found no violation in a run built to provoke one (the harness or checker is not biting)")
		case ch.Verdict == checker.Invalid:
			r.fail(fmt.Sprintf("%s: %s", ch.Name, ch.Detail))
		case ch.Verdict == checker.Unknown:
			r.invalid(fmt.Sprintf("%s could not decide: %s", ch.Name, ch.Detail))
		}
	}
	if cfg.Expect == "violation" && r.rep.Register == nil {
		r.invalid("negative control without a register check")
	}
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string(nil), s[:n]...), fmt.Sprintf("... (%d in all)", len(s)))
}

func crashed(c cluster.Cluster) []string {
	if cr, ok := c.(interface{ Crashes() []string }); ok {
		return cr.Crashes()
	}
	return nil
}

// count tallies completions before the first fault, during the faults and
// after the final heal.
func (r *run) count(ops []history.Op) {
	r.rep.Counts = map[string]Counts{}
	r.rep.ByF = map[string]Counts{}
	for _, op := range ops {
		if op.Process == history.NemesisProcess || op.Type == history.Invoke {
			continue
		}
		phase := "during"
		switch {
		case op.Time < r.rep.faultStart:
			phase = "before"
		case op.Time >= r.rep.healAt:
			phase = "after"
		}
		c := r.rep.Counts[phase]
		b := r.rep.ByF[op.F]
		switch op.Type {
		case history.OK:
			c.OK++
			b.OK++
		case history.Fail:
			c.Fail++
			b.Fail++
		default:
			c.Info++
			b.Info++
		}
		r.rep.Counts[phase] = c
		r.rep.ByF[op.F] = b
	}
}
