// Command cairn-kvbench is a YCSB-style load generator that drives Cairn
// (through the Go driver in jepsen/client), etcd (through its official
// clientv3) or an in-process null server speaking Cairn's protocol, with
// the same key choice, operation mix, closed loop and histogram for all.
// bench/README.md ("Cluster benchmark against etcd") describes it;
// scripts/bench-etcd.sh runs the comparison.
//
//	cairn-kvbench -store cairn -hosts 127.0.7.1:7070 -workload A -load
//	cairn-kvbench report run.jsonl     # the comparison table of JSON lines
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cairn/jepsen/client"
)

type config struct {
	store        string
	hosts        []string
	workload     Mix
	dist         string
	records      uint64
	valueSize    int
	concurrency  int
	connections  int
	loadConc     int
	duration     time.Duration
	warmup       time.Duration
	readCL       client.Consistency
	writeCL      client.Consistency
	serializable bool
	load         bool
	loadOnly     bool
	timeout      time.Duration
	seed         uint64
	json         bool
	caseName     string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "report" {
		os.Exit(report(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usageErr(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "cairn-kvbench: "+format+"\n", a...)
	return 2
}

func parseFlags(args []string, stderr io.Writer) (*config, int) {
	fs := flag.NewFlagSet("cairn-kvbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	store := fs.String("store", "cairn", "cairn, etcd or null (an in-process server that answers every request at once)")
	hosts := fs.String("hosts", "", "comma-separated host:port list (default cairn 127.0.0.1:7070,127.0.0.2:7070,127.0.0.3:7070; etcd 127.0.0.1:2379)")
	workload := fs.String("workload", "A", "A (50% read, 50% update), B (95/5), C (read only), F (50% read, 50% read-modify-write), W (update only), P (ping: the round-trip floor), or load (the load phase only)")
	ping := fs.Bool("ping", false, "same as -workload P")
	dist := fs.String("dist", "uniform", "key choice: uniform or zipfian (YCSB scrambled zipfian, constant 0.99)")
	records := fs.Uint64("records", 100000, "records (keys) in the key space")
	valueSize := fs.Int("value-size", 100, "value bytes")
	conc := fs.Int("concurrency", 64, "requests outstanding: goroutines in a closed loop")
	conns := fs.Int("connections", 4, "Cairn: jepsen clients (connections) shared round-robin by the goroutines; etcd: clientv3 clients")
	loadConc := fs.Int("load-concurrency", 0, "goroutines for the load phase (default max(concurrency, 64))")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 3*time.Second, "time run first and not recorded")
	readCL := fs.String("read-cl", "QUORUM", "Cairn read consistency: ONE, QUORUM or ALL")
	writeCL := fs.String("write-cl", "QUORUM", "Cairn write consistency (and the load's): ONE, QUORUM or ALL")
	ser := fs.Bool("etcd-serializable", false, "etcd: serializable reads (any member, may be stale) instead of linearizable")
	load := fs.Bool("load", false, "write every record first (in parallel, timed on stderr)")
	timeout := fs.Duration("timeout", 2*time.Second, "per-request timeout")
	seed := fs.Uint64("seed", 1, "random seed (key choice, op mix, values)")
	js := fs.Bool("json", false, "one JSON line per run on stdout")
	cs := fs.String("case", "", "a label copied into the JSON line (scripts/bench-etcd.sh pairs runs by it)")
	if err := fs.Parse(args); err != nil {
		return nil, 2
	}
	if fs.NArg() > 0 {
		return nil, usageErr(stderr, "unexpected argument %q", fs.Arg(0))
	}
	c := &config{store: *store, dist: *dist, records: *records, valueSize: *valueSize,
		concurrency: *conc, connections: *conns, loadConc: *loadConc, duration: *duration,
		warmup: *warmup, serializable: *ser, load: *load, timeout: *timeout, seed: *seed,
		json: *js, caseName: *cs}
	switch c.store {
	case "cairn", "etcd", "null":
	default:
		return nil, usageErr(stderr, "bad -store %q (cairn, etcd or null)", c.store)
	}
	w := *workload
	if *ping {
		w = "P"
	}
	if strings.EqualFold(w, "load") {
		c.load, c.loadOnly = true, true
		w = "W"
	}
	var err error
	if c.workload, err = parseMix(w); err != nil {
		return nil, usageErr(stderr, "%v", err)
	}
	if c.workload.Name == "P" && c.store == "etcd" {
		return nil, usageErr(stderr, "workload P (ping) needs -store cairn or null: etcd has no null request")
	}
	if _, err := newKeyChooser(c.dist, max(c.records, 1)); err != nil || c.records == 0 {
		return nil, usageErr(stderr, "bad -dist or -records 0")
	}
	if c.readCL, err = client.ParseConsistency(*readCL); err != nil {
		return nil, usageErr(stderr, "-read-cl: %v", err)
	}
	if c.writeCL, err = client.ParseConsistency(*writeCL); err != nil {
		return nil, usageErr(stderr, "-write-cl: %v", err)
	}
	if c.concurrency < 1 || c.connections < 1 || c.valueSize < 0 || c.duration <= 0 && !c.loadOnly || c.warmup < 0 {
		return nil, usageErr(stderr, "-concurrency and -connections must be at least 1, -duration positive")
	}
	if c.connections > c.concurrency {
		c.connections = c.concurrency
	}
	if c.loadConc <= 0 {
		c.loadConc = max(c.concurrency, 64)
	}
	if *hosts == "" {
		switch c.store {
		case "cairn":
			*hosts = "127.0.0.1:7070,127.0.0.2:7070,127.0.0.3:7070"
		case "etcd":
			*hosts = "127.0.0.1:2379"
		}
	}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.hosts = append(c.hosts, h)
		}
	}
	if c.store != "null" && len(c.hosts) == 0 {
		return nil, usageErr(stderr, "no -hosts")
	}
	return c, 0
}

func openStore(c *config) (Store, func(), error) {
	switch c.store {
	case "etcd":
		s, err := newEtcdStore(c.hosts, c.connections, c.serializable, c.timeout)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	case "null":
		ns, err := startNullServer("127.0.0.1:0", c.valueSize)
		if err != nil {
			return nil, nil, err
		}
		s, err := newCairnStore([]string{ns.Addr()}, c.connections, c.readCL, c.writeCL, c.timeout)
		if err != nil {
			ns.Close()
			return nil, nil, err
		}
		return s, func() { s.Close(); ns.Close() }, nil
	}
	s, err := newCairnStore(c.hosts, c.connections, c.readCL, c.writeCL, c.timeout)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

func errKind(store string, err error) string {
	if store == "etcd" {
		return etcdErrKind(err)
	}
	return cairnErrKind(err)
}

func run(args []string, stdout, stderr io.Writer) int {
	c, rc := parseFlags(args, stderr)
	if c == nil {
		return rc
	}
	st, closeStore, err := openStore(c)
	if err != nil {
		fmt.Fprintf(stderr, "cairn-kvbench: %v\n", err)
		return 2
	}
	defer closeStore()
	if c.workload.Name == "P" {
		cs := st.(*cairnStore)
		if err := cs.probePing(); err != nil {
			fmt.Fprintf(stderr, "cairn-kvbench: ping: %v\n", err)
			return 1
		}
		if cs.pingInfo {
			fmt.Fprintf(stderr, "cairn-kvbench: the node does not know PING (type 23): measuring the floor with INFO instead\n")
		}
	}
	status := 0
	var ld *loadResult
	if c.load {
		ld = doLoad(c, st, stderr)
		if c.json {
			writeJSON(stdout, loadJSON(c, ld))
		}
		if ld.errors > 0 {
			status = 1
		}
		if c.loadOnly {
			return status
		}
	}
	res := measure(c, st)
	pingVia := ""
	if c.workload.Name == "P" {
		pingVia = st.PingVia()
	}
	out := resultJSON(c, res, pingVia, ld)
	printTable(stderr, c, out)
	if c.json {
		writeJSON(stdout, out)
	}
	if out.Errors > 0 || out.Ops == 0 {
		status = 1
	}
	return status
}

func writeJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	w.Write(append(b, '\n'))
}

// ---- load -----------------------------------------------------------------

type loadResult struct {
	records  uint64
	seconds  float64
	errors   uint64
	firstErr string
}

// doLoad writes records 0..n-1 once, from loadConc goroutines taking the
// next index from a shared counter; a failed write is retried twice.
func doLoad(c *config, st Store, stderr io.Writer) *loadResult {
	var next, done, errs atomic.Uint64
	var firstErr atomic.Value
	start := time.Now()
	fmt.Fprintf(stderr, "load: %d records, %d goroutines ...\n", c.records, c.loadConc)
	stop := make(chan struct{})
	go func() { // progress for long loads
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				d := done.Load()
				el := time.Since(start).Seconds()
				fmt.Fprintf(stderr, "load: %d/%d (%.0f/s)\n", d, c.records, float64(d)/el)
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < c.loadConc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(c.seed, uint64(w)+1<<32))
			val := randomValue(r, c.valueSize)
			key := make([]byte, 0, 32)
			for {
				i := next.Add(1) - 1
				if i >= c.records {
					return
				}
				key = appendKey(key[:0], i)
				var err error
				for try := 0; try < 3; try++ {
					if err = st.Write(w, key, val); err == nil {
						break
					}
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				done.Add(1)
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	lr := &loadResult{records: c.records, seconds: time.Since(start).Seconds(), errors: errs.Load()}
	if s, ok := firstErr.Load().(string); ok {
		lr.firstErr = s
	}
	fmt.Fprintf(stderr, "load: %d records in %.1f s (%.0f/s), %d failed\n", lr.records, lr.seconds,
		float64(lr.records)/lr.seconds, lr.errors)
	if lr.firstErr != "" {
		fmt.Fprintf(stderr, "load: first error: %s\n", lr.firstErr)
	}
	return lr
}

// bump changes one byte of v.
func bump(r *rand.Rand, v []byte) {
	if len(v) > 0 {
		v[r.IntN(len(v))]++
	}
}

func randomValue(r *rand.Rand, n int) []byte {
	v := make([]byte, n)
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range v {
		v[i] = alnum[r.IntN(len(alnum))]
	}
	return v
}

// ---- the measured run -------------------------------------------------------

type workerStats struct {
	hist     [numOps]*Hist
	errs     [numOps]map[string]uint64
	notFound [numOps]uint64
	firstErr string
}

type runResult struct {
	seconds    float64
	cpuSeconds float64     // the generator process's CPU time in the window
	load1      float64     // the host's 1-minute load average at the end
	stats      workerStats // merged
}

// measure runs the closed loop: concurrency goroutines, each issuing its
// next operation when the previous one is done. An operation is recorded
// when it completes inside the measured window [warmup, warmup+duration);
// goroutines stop issuing at the window's end and the ones in flight are
// waited for (and not recorded).
func measure(c *config, st Store) *runResult {
	chooser, _ := newKeyChooser(c.dist, c.records)
	begin := time.Now()
	winStart := begin.Add(c.warmup)
	winEnd := winStart.Add(c.duration)
	stats := make([]*workerStats, c.concurrency)
	var wg sync.WaitGroup
	// The generator's own CPU time over the window (all its threads; with
	// -store null the null server's too).
	var cpu0, cpu1 float64
	cpuDone := make(chan struct{})
	go func() {
		defer close(cpuDone)
		time.Sleep(time.Until(winStart))
		cpu0 = processCPU()
		time.Sleep(time.Until(winEnd))
		cpu1 = processCPU()
	}()
	for w := 0; w < c.concurrency; w++ {
		ws := &workerStats{}
		for o := Op(0); o < numOps; o++ {
			if c.workload.Share[o] > 0 {
				ws.hist[o] = &Hist{}
				ws.errs[o] = map[string]uint64{}
			}
		}
		stats[w] = ws
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			worker(c, st, chooser, w, ws, winStart, winEnd)
		}(w)
	}
	wg.Wait()
	<-cpuDone
	rr := &runResult{seconds: c.duration.Seconds(), cpuSeconds: cpu1 - cpu0, load1: loadAvg1()}
	m := &rr.stats
	for o := Op(0); o < numOps; o++ {
		if c.workload.Share[o] > 0 {
			m.hist[o] = &Hist{}
			m.errs[o] = map[string]uint64{}
		}
	}
	for _, ws := range stats {
		for o := Op(0); o < numOps; o++ {
			if ws.hist[o] == nil {
				continue
			}
			m.hist[o].Merge(ws.hist[o])
			for k, v := range ws.errs[o] {
				m.errs[o][k] += v
			}
			m.notFound[o] += ws.notFound[o]
		}
		if m.firstErr == "" {
			m.firstErr = ws.firstErr
		}
	}
	return rr
}

func worker(c *config, st Store, keys KeyChooser, w int, ws *workerStats, winStart, winEnd time.Time) {
	r := rand.New(rand.NewPCG(c.seed, uint64(w)))
	val := randomValue(r, c.valueSize)
	key := make([]byte, 0, 32)
	mix := c.workload
	for {
		op := mix.Pick(r)
		key = appendKey(key[:0], keys.Next(r))
		t0 := time.Now()
		if !t0.Before(winEnd) {
			return
		}
		found := true
		var err error
		switch op {
		case OpRead:
			found, err = st.Read(w, key)
		case OpUpdate:
			bump(r, val) // a different value each time
			err = st.Write(w, key, val)
		case OpRMW:
			if found, err = st.Read(w, key); err == nil {
				bump(r, val)
				err = st.Write(w, key, val)
			}
		case OpPing:
			err = st.Ping(w)
		}
		t1 := time.Now()
		if t1.Before(winStart) || !t1.Before(winEnd) {
			if err != nil {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		if err != nil {
			ws.errs[op][errKind(c.store, err)]++
			if ws.firstErr == "" {
				ws.firstErr = op.String() + ": " + err.Error()
			}
			time.Sleep(time.Millisecond) // no hot loop against a failing store
			continue
		}
		if !found {
			ws.notFound[op]++
		}
		ws.hist[op].Record(uint64(t1.Sub(t0)))
	}
}

// ---- output -----------------------------------------------------------------

type latJSON struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type opJSON struct {
	Ops          uint64            `json:"ops"`
	OpsPerSec    float64           `json:"ops_per_sec"`
	Errors       uint64            `json:"errors"`
	NotFound     uint64            `json:"not_found"`
	Latency      latJSON           `json:"latency_us"`
	ErrorsByKind map[string]uint64 `json:"errors_by_kind"`
}

type loadOut struct {
	Bench       string  `json:"bench"`
	Phase       string  `json:"phase"`
	Case        string  `json:"case,omitempty"`
	Store       string  `json:"store"`
	Records     uint64  `json:"records"`
	ValueSize   int     `json:"value_size"`
	Concurrency int     `json:"concurrency"`
	WriteCL     string  `json:"write_cl,omitempty"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	Errors      uint64  `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
}

type runOut struct {
	Bench        string            `json:"bench"`
	Phase        string            `json:"phase"`
	Case         string            `json:"case,omitempty"`
	Store        string            `json:"store"`
	Workload     string            `json:"workload"`
	Dist         string            `json:"dist"`
	Records      uint64            `json:"records"`
	ValueSize    int               `json:"value_size"`
	Concurrency  int               `json:"concurrency"`
	Connections  int               `json:"connections"`
	ReadCL       string            `json:"read_cl,omitempty"`
	WriteCL      string            `json:"write_cl,omitempty"`
	ReadMode     string            `json:"etcd_reads,omitempty"`
	PingVia      string            `json:"ping_via,omitempty"`
	DurationS    float64           `json:"duration_s"`
	WarmupS      float64           `json:"warmup_s"`
	Loaded       bool              `json:"loaded"`
	Ops          uint64            `json:"ops"`
	OpsPerSec    float64           `json:"ops_per_sec"`
	Errors       uint64            `json:"errors"`
	NotFound     uint64            `json:"not_found"`
	Latency      latJSON           `json:"latency_us"`
	ErrorsByKind map[string]uint64 `json:"errors_by_kind"`
	FirstError   string            `json:"first_error,omitempty"`
	ByOp         map[string]opJSON `json:"by_op"`
	GoMaxProcs   int               `json:"gomaxprocs"`
	// The generator's CPU seconds in the window, per second and per op
	// (microseconds), and the host's load average: what the generator
	// took from the machine, and how busy the machine was.
	GenCPUPerSec float64 `json:"generator_cpu_per_sec"`
	GenCPUPerOp  float64 `json:"generator_cpu_us_per_op"`
	HostLoad1    float64 `json:"host_load1"`
}

func loadJSON(c *config, l *loadResult) loadOut {
	o := loadOut{Bench: "kvbench", Phase: "load", Case: c.caseName, Store: c.store, Records: l.records,
		ValueSize: c.valueSize, Concurrency: c.loadConc, Seconds: round3(l.seconds),
		OpsPerSec: round1(float64(l.records) / l.seconds), Errors: l.errors, FirstError: l.firstErr}
	if c.store != "etcd" {
		o.WriteCL = c.writeCL.String()
	}
	return o
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }
func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func latOf(h *Hist) latJSON {
	us := func(ns float64) float64 { return round1(ns / 1000) }
	return latJSON{P50: us(h.Percentile(50)), P90: us(h.Percentile(90)), P99: us(h.Percentile(99)),
		P999: us(h.Percentile(99.9)), Max: us(float64(h.Max())), Mean: us(h.Mean())}
}

func resultJSON(c *config, rr *runResult, pingVia string, ld *loadResult) runOut {
	o := runOut{Bench: "kvbench", Phase: "run", Case: c.caseName, Store: c.store, Workload: c.workload.Name,
		Dist: c.dist, Records: c.records, ValueSize: c.valueSize, Concurrency: c.concurrency,
		Connections: c.connections, PingVia: pingVia, DurationS: round3(rr.seconds),
		WarmupS: round3(c.warmup.Seconds()), Loaded: ld != nil, ErrorsByKind: map[string]uint64{},
		FirstError: rr.stats.firstErr, ByOp: map[string]opJSON{}, GoMaxProcs: runtime.GOMAXPROCS(0)}
	if c.workload.Name != "P" {
		if c.store == "etcd" {
			o.ReadMode = "linearizable"
			if c.serializable {
				o.ReadMode = "serializable"
			}
		} else {
			o.ReadCL, o.WriteCL = c.readCL.String(), c.writeCL.String()
		}
	}
	all := &Hist{}
	for op := Op(0); op < numOps; op++ {
		h := rr.stats.hist[op]
		if h == nil {
			continue
		}
		all.Merge(h)
		oj := opJSON{Ops: h.Count(), OpsPerSec: round1(float64(h.Count()) / rr.seconds),
			NotFound: rr.stats.notFound[op], Latency: latOf(h), ErrorsByKind: rr.stats.errs[op]}
		for k, v := range rr.stats.errs[op] {
			oj.Errors += v
			o.ErrorsByKind[k] += v
		}
		o.Errors += oj.Errors
		o.NotFound += oj.NotFound
		o.ByOp[op.String()] = oj
	}
	o.Ops = all.Count()
	o.OpsPerSec = round1(float64(all.Count()) / rr.seconds)
	o.Latency = latOf(all)
	o.GenCPUPerSec = round3(rr.cpuSeconds / rr.seconds)
	if o.Ops > 0 {
		o.GenCPUPerOp = round1(rr.cpuSeconds * 1e6 / float64(o.Ops))
	}
	o.HostLoad1 = rr.load1
	return o
}

func printTable(w io.Writer, c *config, o runOut) {
	fmt.Fprintf(w, "\ncairn-kvbench: store %s, workload %s, %s keys over %d records, %d-byte values, "+
		"%d outstanding over %d connections", o.Store, o.Workload, o.Dist, o.Records, o.ValueSize,
		o.Concurrency, o.Connections)
	switch {
	case o.PingVia != "":
		fmt.Fprintf(w, ", null request %s", o.PingVia)
	case o.ReadMode != "":
		fmt.Fprintf(w, ", %s reads", o.ReadMode)
	default:
		fmt.Fprintf(w, ", reads %s, writes %s", o.ReadCL, o.WriteCL)
	}
	fmt.Fprintf(w, "; %.1f s after %.1f s warmup\n", o.DurationS, o.WarmupS)
	fmt.Fprintf(w, "generator CPU %.2f cores (%.1f us per op); host load average %.2f\n",
		o.GenCPUPerSec, o.GenCPUPerOp, o.HostLoad1)
	fmt.Fprintf(w, "%-7s %10s %10s %7s %9s %9s %9s %9s %9s %9s\n", "op", "ops", "ops/s", "errors",
		"not found", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us")
	row := func(name string, ops uint64, ops_s float64, errs, nf uint64, l latJSON) {
		fmt.Fprintf(w, "%-7s %10d %10.0f %7d %9d %9.0f %9.0f %9.0f %9.0f %9.0f\n", name, ops, ops_s, errs, nf,
			l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	names := make([]string, 0, len(o.ByOp))
	for k := range o.ByOp {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, n := range names {
		b := o.ByOp[n]
		row(n, b.Ops, b.OpsPerSec, b.Errors, b.NotFound, b.Latency)
	}
	if len(names) > 1 {
		row("all", o.Ops, o.OpsPerSec, o.Errors, o.NotFound, o.Latency)
	}
	if o.Errors > 0 {
		kinds := make([]string, 0)
		for k, v := range o.ErrorsByKind {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(kinds)
		fmt.Fprintf(w, "errors: %s; first: %s\n", strings.Join(kinds, ", "), o.FirstError)
	}
}

// ---- report -------------------------------------------------------------------

// report reads JSON lines (run phase) and prints the comparison: one row
// per case that has both an etcd and a Cairn run, then the runs of cases
// with one store (null server, ping floor, levels).
func report(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		return usageErr(stderr, "usage: cairn-kvbench report FILE.jsonl")
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return usageErr(stderr, "%v", err)
	}
	type pair struct{ etcd, cairn *runOut }
	var order []string
	pairs := map[string]*pair{}
	var singles []*runOut
	var loads []loadOut
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var probe struct {
			Phase string `json:"phase"`
		}
		if json.Unmarshal([]byte(line), &probe) != nil {
			continue
		}
		if probe.Phase == "load" {
			var l loadOut
			if json.Unmarshal([]byte(line), &l) == nil {
				loads = append(loads, l)
			}
			continue
		}
		o := &runOut{}
		if json.Unmarshal([]byte(line), o) != nil || o.Phase != "run" {
			continue
		}
		p := pairs[o.Case]
		if p == nil {
			p = &pair{}
			pairs[o.Case] = p
			order = append(order, o.Case)
		}
		if o.Store == "etcd" {
			p.etcd = o
		} else if o.Store == "cairn" && o.Workload != "P" {
			p.cairn = o
		} else {
			singles = append(singles, o)
		}
	}
	pl := func(o *runOut) string {
		return fmt.Sprintf("%s / %s", commas(o.Latency.P50), commas(o.Latency.P99))
	}
	errs := func(o *runOut) string {
		if o.Errors == 0 {
			return "0"
		}
		return fmt.Sprintf("%d", o.Errors)
	}
	head := false
	for _, k := range order {
		p := pairs[k]
		if p.etcd == nil || p.cairn == nil {
			if p.cairn != nil {
				singles = append(singles, p.cairn)
			}
			if p.etcd != nil {
				singles = append(singles, p.etcd)
			}
			continue
		}
		if !head {
			fmt.Fprintln(stdout, "| case | workload | concurrency | etcd ops/s | cairn ops/s | cairn/etcd | etcd p50 / p99 us | cairn p50 / p99 us | errors etcd / cairn | host load etcd / cairn |")
			fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|")
			head = true
		}
		ratio := "-"
		if p.etcd.OpsPerSec > 0 {
			ratio = fmt.Sprintf("%.2fx", p.cairn.OpsPerSec/p.etcd.OpsPerSec)
		}
		fmt.Fprintf(stdout, "| %s | %s | %d | %s | %s | %s | %s | %s | %s / %s | %.1f / %.1f |\n", k,
			p.cairn.Workload, p.cairn.Concurrency, commas(p.etcd.OpsPerSec), commas(p.cairn.OpsPerSec), ratio,
			pl(p.etcd), pl(p.cairn), errs(p.etcd), errs(p.cairn), p.etcd.HostLoad1, p.cairn.HostLoad1)
	}
	if len(singles) > 0 {
		if head {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintln(stdout, "| case | store | workload | concurrency | levels / reads | ops/s | p50 / p99 us | p99.9 / max us | errors | generator CPU us/op | host load |")
		fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|---|")
		for _, o := range singles {
			lv := o.ReadMode
			switch {
			case o.PingVia != "":
				lv = "null request " + o.PingVia
			case o.ReadCL != "":
				lv = "read " + o.ReadCL + ", write " + o.WriteCL
			}
			fmt.Fprintf(stdout, "| %s | %s | %s | %d | %s | %s | %s | %s / %s | %s | %.1f | %.1f |\n", o.Case,
				o.Store, o.Workload, o.Concurrency, lv, commas(o.OpsPerSec), pl(o), commas(o.Latency.P999),
				commas(o.Latency.Max), errs(o), o.GenCPUPerOp, o.HostLoad1)
		}
	}
	if len(loads) > 0 {
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, "| load | store | records | goroutines | seconds | records/s | errors |")
		fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|")
		for _, l := range loads {
			fmt.Fprintf(stdout, "| %s | %s | %s | %d | %.1f | %s | %d |\n", l.Case, l.Store,
				commas(float64(l.Records)), l.Concurrency, l.Seconds, commas(l.OpsPerSec), l.Errors)
		}
	}
	if !head && len(singles) == 0 {
		fmt.Fprintln(stderr, "cairn-kvbench report: no runs in", args[0])
		return 1
	}
	return 0
}

// commas formats x rounded to an integer with thousands separators.
func commas(x float64) string {
	n := int64(x + 0.5)
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprintf("%d", n)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
