// cairn-jepsen runs chaos and partition tests against Cairn.
//
//	cairn-jepsen run     one scenario (workload x nemesis x consistency level)
//	cairn-jepsen smoke   the short suite of scripts/test.sh (about five minutes)
//	cairn-jepsen nightly N runs x T seconds of every nemesis with every workload
//	cairn-jepsen check   re-check a saved history.jsonl
//
// Every command ends with a line "RESULT: PASS", "RESULT: FAIL" or
// "RESULT: INVALID" and exits 0, 1 or 2 accordingly. See jepsen/README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cairn/jepsen/checker"
	"cairn/jepsen/client"
	"cairn/jepsen/cluster"
	"cairn/jepsen/history"
	"cairn/jepsen/nemesis"
	"cairn/jepsen/runner"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage: cairn-jepsen COMMAND [flags]

Commands:
  run      one scenario: -workload register|set -nemesis NAME -cl ONE|QUORUM|ALL -time 30s ...
  smoke    the short suite run by scripts/test.sh (a few scenarios and a negative control)
  nightly  -runs N -time T: every nemesis with every workload, N runs each, plus the negative control
  check    FILE: re-check a saved history (register or set, from its operations)
  cleanup  -subnet 127.0.5.: remove iptables rules left by a harness that was killed -9

Nemeses: `+strings.Join(nemesis.Names, ", ")+`
Run 'cairn-jepsen COMMAND -h' for the flags. Every command ends with
RESULT: PASS (exit 0), RESULT: FAIL (exit 1) or RESULT: INVALID (exit 2).
`)
}

func main() {
	cluster.ProbeMain()
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "run":
		code = cmdRun(os.Args[2:])
	case "smoke":
		code = cmdSuite("smoke", os.Args[2:])
	case "nightly":
		code = cmdSuite("nightly", os.Args[2:])
	case "check":
		code = cmdCheck(os.Args[2:])
	case "cleanup":
		fs := flag.NewFlagSet("cleanup", flag.ExitOnError)
		subnet := fs.String("subnet", "127.0.5.", "the local cluster's address prefix")
		fs.Parse(os.Args[2:])
		if err := cluster.CleanupLocal(*subnet); err != nil {
			fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\n", err)
			code = 1
		}
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "cairn-jepsen: unknown command %q\n", os.Args[1])
		usage()
		code = 2
	}
	os.Exit(code)
}

// common flags: where the binaries are, the cluster, the store.
type common struct {
	mode        string
	build       string
	cairnd      string
	cairndLibc  string
	store       string
	nodes       int
	subnet      string
	uidBase     int
	rf          int
	compose     string
	project     string
	extra       string
	maxOffsetMs int
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.mode, "mode", "local", "cluster: local (processes on loopback addresses) or docker (docker compose)")
	fs.StringVar(&c.build, "build", "", "Cairn build directory (default: $CAIRN_BUILD, else build/ or ../build/)")
	fs.StringVar(&c.cairnd, "cairnd", "", "cairnd binary (default BUILD/node/cairnd)")
	fs.StringVar(&c.cairndLibc, "cairnd-libc", "", "cairnd-libc binary for libfaketime (default BUILD/node/cairnd-libc)")
	fs.StringVar(&c.store, "store", "store", "directory for runs: histories, logs, reports")
	fs.IntVar(&c.nodes, "nodes", 5, "local: number of nodes")
	fs.StringVar(&c.subnet, "subnet", "127.0.5.", "local: node addresses are SUBNET1, SUBNET2, ...")
	fs.IntVar(&c.uidBase, "uid-base", -1, "local: node i runs as uid UID_BASE+i so partitions can tell nodes apart (default 61000 + 10 x the subnet's third number when root, else 0 = no partitions)")
	fs.IntVar(&c.rf, "rf", 3, "replication_factor")
	fs.StringVar(&c.compose, "compose-file", "../deploy/docker-compose.yml", "docker: the 5-node compose file")
	fs.StringVar(&c.project, "project", "cairn-jepsen", "docker: compose project name")
	fs.StringVar(&c.extra, "cairnd-args", "", "local: extra cairnd flags for every node, space-separated")
	fs.IntVar(&c.maxOffsetMs, "max-clock-offset-ms", 500, "the nodes' max_clock_offset_ms (separates small from big clock skews)")
}

func findBinary(explicit, build, rel string) (string, error) {
	if explicit != "" {
		return filepath.Abs(explicit)
	}
	var dirs []string
	if build != "" {
		dirs = append(dirs, build)
	} else if env := os.Getenv("CAIRN_BUILD"); env != "" {
		dirs = append(dirs, env)
	} else {
		dirs = append(dirs, "build", "../build")
	}
	for _, d := range dirs {
		p := filepath.Join(d, rel)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("%s not found under %s: build Cairn first (cmake --build build) or pass -build", rel, strings.Join(dirs, ", "))
}

// makeCluster builds the cluster for one run in dir.
func (c *common) makeCluster(dir string, faketime bool) (cluster.Cluster, error) {
	switch c.mode {
	case "local":
		bin, err := findBinary(c.cairnd, c.build, "node/cairnd")
		if err != nil {
			return nil, err
		}
		libc, err := findBinary(c.cairndLibc, c.build, "node/cairnd-libc")
		if err != nil && faketime {
			return nil, err
		}
		uid := c.uidBase
		if uid < 0 {
			uid = 0
			if os.Geteuid() == 0 {
				var a, b, third int
				fmt.Sscanf(c.subnet, "%d.%d.%d.", &a, &b, &third)
				uid = 61000 + 10*third
			}
		}
		extra := []string{"--max-clock-offset-ms", fmt.Sprint(c.maxOffsetMs)}
		extra = append(extra, strings.Fields(c.extra)...)
		return cluster.NewLocal(cluster.LocalConfig{Dir: dir, Binary: bin, LibcBinary: libc, Nodes: c.nodes,
			Subnet: c.subnet, RF: c.rf, UIDBase: uid, Faketime: faketime, ExtraArgs: extra})
	case "docker":
		return cluster.NewDocker(cluster.DockerConfig{ComposeFile: c.compose, Project: c.project, Dir: dir})
	}
	return nil, fmt.Errorf("unknown mode %q (local or docker)", c.mode)
}

// scenario flags
type scen struct {
	workload, nemesis, cl, expect, name string
	seed                                int64
	dur, warmup, fault, quiet, recovery time.Duration
	processes, perKey, opsPerKey        int
	rate                                float64
	opTimeout                           time.Duration
}

func (s *scen) register(fs *flag.FlagSet, withName bool) {
	if withName {
		fs.StringVar(&s.workload, "workload", "register", "register or set")
		fs.StringVar(&s.nemesis, "nemesis", "partition", "fault to inject: "+strings.Join(nemesis.Names, ", "))
		fs.StringVar(&s.cl, "cl", "QUORUM", "consistency level of reads and writes")
		fs.StringVar(&s.expect, "expect", "", "\"violation\" for a negative control that must be found non-linearizable")
		fs.StringVar(&s.name, "name", "", "scenario name (default workload-nemesis-cl)")
		fs.Int64Var(&s.seed, "seed", 0, "random seed (default: from the clock; printed)")
	}
	fs.DurationVar(&s.dur, "time", 30*time.Second, "time of faults and quiet periods, after the warmup")
	fs.DurationVar(&s.warmup, "warmup", 5*time.Second, "quiet time before the first fault")
	fs.DurationVar(&s.fault, "fault-time", 8*time.Second, "length of each fault")
	fs.DurationVar(&s.quiet, "quiet-time", 4*time.Second, "quiet time between faults")
	fs.DurationVar(&s.recovery, "recovery", 5*time.Second, "workload time after the final heal")
	fs.IntVar(&s.processes, "processes", 10, "client processes")
	fs.IntVar(&s.perKey, "per-key", 5, "register: processes sharing a key")
	fs.IntVar(&s.opsPerKey, "ops-per-key", 100, "register: operations on a key before its processes move to a new one")
	fs.Float64Var(&s.rate, "rate", 150, "target operations per second over all processes")
	fs.DurationVar(&s.opTimeout, "op-timeout", time.Second, "request timeout")
}

func (s *scen) config() (runner.Config, error) {
	cl, err := client.ParseConsistency(s.cl)
	if err != nil {
		return runner.Config{}, err
	}
	if s.workload != "register" && s.workload != "set" {
		return runner.Config{}, fmt.Errorf("unknown workload %q", s.workload)
	}
	if _, err := nemesis.New(s.nemesis, time.Second); err != nil {
		return runner.Config{}, err
	}
	if s.expect != "" && s.expect != "violation" {
		return runner.Config{}, fmt.Errorf("-expect must be empty or \"violation\"")
	}
	return runner.Config{Name: s.name, Workload: s.workload, Nemesis: s.nemesis, Consistency: cl,
		Expect: s.expect, Seed: s.seed, Duration: s.dur, Warmup: s.warmup, FaultTime: s.fault,
		QuietTime: s.quiet, Recovery: s.recovery, Processes: s.processes, PerKey: s.perKey,
		OpsPerKey: s.opsPerKey, Rate: s.rate, OpTimeout: s.opTimeout}, nil
}

func needsClocks(name string) bool {
	n, err := nemesis.New(name, time.Second)
	return err == nil && n != nil && n.NeedsClocks()
}

// runOne runs cfg on a fresh cluster in a new directory under store.
func runOne(com *common, cfg runner.Config) (*runner.Report, error) {
	cfg.Defaults()
	cfg.MaxOffset = time.Duration(com.maxOffsetMs) * time.Millisecond
	stamp := time.Now().UTC().Format("20060102T150405")
	cfg.Dir = filepath.Join(com.store, fmt.Sprintf("%s-%s-seed%d", stamp, cfg.Name, cfg.Seed))
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(cfg.Dir); err == nil {
		cfg.Dir = abs
	}
	c, err := com.makeCluster(filepath.Join(cfg.Dir, "cluster"), needsClocks(cfg.Nemesis))
	if err != nil {
		return nil, err
	}
	return runner.Run(cfg, c, os.Stdout)
}

func exitCode(result string) int {
	switch result {
	case runner.Pass:
		return 0
	case runner.Fail:
		return 1
	}
	return 2
}

func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var com common
	var s scen
	com.register(fs)
	s.register(fs, true)
	fs.Parse(args)
	cfg, err := s.config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\nRESULT: INVALID\n", err)
		return 2
	}
	rep, err := runOne(&com, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\nRESULT: INVALID\n", err)
		return 2
	}
	return exitCode(rep.Result)
}

// suite scenarios
type suiteEntry struct {
	workload, nemesis, expect string
	cl                        client.Consistency
	dur                       time.Duration
}

// smokeSuite is what scripts/test.sh runs: partitions, pauses, kill -9
// and clock skew within max_clock_offset, plus the negative control. A
// coordinator killed with a write in flight can leave that key's replicas
// diverged (jepsen/README.md, finding 1); the final phase's repair brings
// them together, and convergence is judged after it.
func smokeSuite() []suiteEntry {
	return []suiteEntry{
		{workload: "register", nemesis: "partition", cl: client.Quorum, dur: 45 * time.Second},
		{workload: "set", nemesis: "pause", cl: client.Quorum, dur: 36 * time.Second},
		{workload: "register", nemesis: "clock", cl: client.Quorum, dur: 36 * time.Second},
		{workload: "set", nemesis: "kill", cl: client.Quorum, dur: 30 * time.Second},
		{workload: "register", nemesis: "partition-halves", cl: client.One, expect: "violation", dur: 24 * time.Second},
	}
}

func nightlySuite(nemeses, workloads []string, dur time.Duration) []suiteEntry {
	var out []suiteEntry
	for _, n := range nemeses {
		for _, w := range workloads {
			out = append(out, suiteEntry{workload: w, nemesis: n, cl: client.Quorum, dur: dur})
		}
	}
	return append(out, suiteEntry{workload: "register", nemesis: "partition-halves", cl: client.One,
		expect: "violation", dur: dur})
}

func cmdSuite(which string, args []string) int {
	fs := flag.NewFlagSet(which, flag.ExitOnError)
	var com common
	var s scen
	com.register(fs)
	s.register(fs, false)
	runs := fs.Int("runs", 1, "runs of each scenario")
	seed := fs.Int64("seed", 0, "seed of the first run (then +1 per run; default from the clock)")
	nem := fs.String("nemeses", "partition,kill,pause,clock,clock-big,clock-strobe,combined", "nightly: nemeses to run")
	wls := fs.String("workloads", "register,set", "nightly: workloads to run")
	fs.Parse(args)
	var suite []suiteEntry
	if which == "smoke" {
		suite = smokeSuite()
	} else {
		suite = nightlySuite(strings.Split(*nem, ","), strings.Split(*wls, ","), s.dur)
	}
	base := *seed
	if base == 0 {
		base = time.Now().UnixNano() % 1000000000
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var reps []*runner.Report
	worst := runner.Pass
	n := 0
	for r := 0; r < *runs; r++ {
		for _, e := range suite {
			cfgScen := s
			cfgScen.workload, cfgScen.nemesis, cfgScen.expect, cfgScen.cl = e.workload, e.nemesis, e.expect, e.cl.String()
			if which == "smoke" && !set["time"] {
				cfgScen.dur = e.dur
			}
			cfgScen.seed = base + int64(n)
			n++
			if e.expect == "violation" {
				cfgScen.name = fmt.Sprintf("negative-control-%s-%s-%s", e.workload, e.nemesis, strings.ToLower(e.cl.String()))
				// faults most of the time: a stale read must show up
				cfgScen.quiet = 2 * time.Second
			}
			cfg, err := cfgScen.config()
			if err != nil {
				fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\n", err)
				return 2
			}
			rep, err := runOne(&com, cfg)
			if err != nil {
				fmt.Printf("cairn-jepsen: %s: %v\n", cfg.Name, err)
				worst = runner.Invalid
				continue
			}
			reps = append(reps, rep)
			if rep.Result == runner.Fail || rep.Result == runner.Invalid && worst == runner.Pass {
				worst = rep.Result
			}
			fmt.Println()
		}
	}
	rows := runner.Summarize(reps)
	fmt.Printf("== %s summary\n%s", which, runner.Table(rows))
	for _, row := range rows {
		for _, f := range row.Failures {
			fmt.Printf("not passed: %s: %s\n", row.Scenario, f)
		}
	}
	fmt.Printf("RESULT: %s\n", worst)
	return exitCode(worst)
}

func cmdCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	dir := fs.String("viz", "", "directory for Porcupine visualisations of failing keys")
	fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: cairn-jepsen check [-viz DIR] HISTORY.jsonl")
		return 2
	}
	if *dir != "" {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\nRESULT: INVALID\n", err)
			return 2
		}
	}
	ops, err := history.Read(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\nRESULT: INVALID\n", err)
		return 2
	}
	kind := ""
	for _, op := range ops {
		switch op.F {
		case "write":
			kind = "register"
		case "add":
			kind = "set"
		}
		if kind != "" {
			break
		}
	}
	verdict := checker.Unknown
	switch kind {
	case "register":
		res, err := checker.CheckRegisters(ops, time.Minute, 2, *dir, 5)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\n", err)
			break
		}
		fmt.Printf("register: %s; %d keys, %d operations, %d indeterminate writes; illegal %v; undecided %v; %.2fs\n",
			res.Verdict, res.Keys, res.Operations, res.InfoWrites, res.IllegalKeys, res.UnknownKeys, res.Elapsed.Seconds())
		for _, v := range res.Visualized {
			fmt.Println("visualisation:", v)
		}
		verdict = res.Verdict
	case "set":
		res, err := checker.CheckSet(ops)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\n", err)
			break
		}
		fmt.Printf("set: %s; attempted %d, acked %d, lost %v, recovered %d, unexpected %v, failed-but-present %v, unreadable %d\n",
			res.Verdict, res.Attempted, res.Acked, res.Lost, len(res.Recovered), res.Unexpected, res.FailedPresent, len(res.Unreadable))
		verdict = res.Verdict
	default:
		err = errors.New("no writes or adds in the history")
		fmt.Fprintf(os.Stderr, "cairn-jepsen: %v\n", err)
	}
	result := map[string]string{checker.Valid: runner.Pass, checker.Invalid: runner.Fail}[verdict]
	if result == "" {
		result = runner.Invalid
	}
	fmt.Printf("RESULT: %s\n", result)
	return exitCode(result)
}
