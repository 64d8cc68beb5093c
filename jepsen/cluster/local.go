package cluster

// Local runs every node as a cairnd process on its own loopback address
// (127.0.5.1, 127.0.5.2, ... by default), all on the default ports.
//
// Partitions. A node's peer connections to others leave from 127.0.0.1 on
// loopback (cairnd does not bind the source address of the connections it
// dials), so a rule on source and destination addresses alone cannot cut
// them. Each node therefore runs as its own user id, and a cut "a does not
// hear from b" is two iptables rules: in OUTPUT, packets of b's uid to a's
// address are dropped (this catches every TCP connection b dials and every
// UDP gossip datagram it sends, whatever the source address); in INPUT,
// packets from b's address to a's are dropped (b's bound gossip socket, and
// any connection if cairnd ever binds its source). Replies on a connection
// the other side dialled travel to 127.0.0.1 and are not matched, but every
// request that would provoke one is. The rules live in two chains of our
// own, jumped to from INPUT and OUTPUT, so healing is one flush and nothing
// else on the machine is touched. PartitionCheck verifies the cut end to
// end with a probe process running as a node's uid.
//
// Clocks. With Faketime set, nodes run the cairnd-libc build (libfaketime
// cannot initialise under jemalloc) with libfaketime preloaded, reading
// their offset from a per-node file that SetClock rewrites; the monotonic
// clock stays real, so timeouts are unaffected.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// LocalConfig describes a local cluster.
type LocalConfig struct {
	Dir        string   // run directory: node data, logs, clock files
	Binary     string   // cairnd
	LibcBinary string   // cairnd-libc (for libfaketime)
	Nodes      int      // default 5
	Subnet     string   // address prefix, default "127.0.5." (nodes at .1 ...)
	ClientPort int      // default 7070
	PeerPort   int      // default 7071
	AdminPort  int      // default 7072
	Cluster    string   // cluster_name, default "jepsen"
	RF         int      // replication_factor, default 3
	ExtraArgs  []string // more cairnd flags for every node
	// UIDBase: node i runs as uid/gid UIDBase+i (needs root); 0 runs nodes
	// as the harness's own user, and partitions are then impossible.
	UIDBase     int
	Faketime    bool
	FaketimeLib string // default: the Debian path
}

// Local is a cluster of local processes.
type Local struct {
	cfg   LocalConfig
	nodes []Node
	ipt   *iptables

	mu      sync.Mutex
	procs   map[string]*proc
	crashes []string
	paused  map[string]bool
	offsets map[string]time.Duration
	cut     bool
}

type proc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	expected atomic.Bool // the harness ended it (kill, stop)
}

// FaketimeLibs are where Debian's libfaketime package puts the library.
var FaketimeLibs = []string{
	"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
	"/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
	"/usr/lib/faketime/libfaketime.so.1",
}

// NewLocal prepares (but does not start) a local cluster.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 5
	}
	if cfg.Subnet == "" {
		cfg.Subnet = "127.0.5."
	}
	if cfg.ClientPort == 0 {
		cfg.ClientPort = 7070
	}
	if cfg.PeerPort == 0 {
		cfg.PeerPort = 7071
	}
	if cfg.AdminPort == 0 {
		cfg.AdminPort = 7072
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "jepsen"
	}
	if cfg.RF == 0 {
		cfg.RF = 3
	}
	if cfg.Faketime && cfg.FaketimeLib == "" {
		for _, p := range FaketimeLibs {
			if _, err := os.Stat(p); err == nil {
				cfg.FaketimeLib = p
				break
			}
		}
	}
	bin := cfg.Binary
	if cfg.Faketime {
		bin = cfg.LibcBinary
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("cairnd binary: %v", err)
	}
	l := &Local{cfg: cfg, procs: map[string]*proc{}, paused: map[string]bool{},
		offsets: map[string]time.Duration{}}
	for i := 1; i <= cfg.Nodes; i++ {
		host := cfg.Subnet + strconv.Itoa(i)
		l.nodes = append(l.nodes, Node{
			Name:       "n" + strconv.Itoa(i),
			Host:       host,
			ClientAddr: net.JoinHostPort(host, strconv.Itoa(cfg.ClientPort)),
			AdminAddr:  net.JoinHostPort(host, strconv.Itoa(cfg.AdminPort)),
		})
	}
	l.ipt = newIptables(strings.TrimSuffix(cfg.Subnet, "."))
	return l, nil
}

func (l *Local) Kind() string { return "local" }

// ClusterName is the cluster_name the nodes run with.
func (l *Local) ClusterName() string { return l.cfg.Cluster }

// Crashes lists nodes that exited without the harness ending them.
func (l *Local) Crashes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.crashes...)
}
func (l *Local) Nodes() []Node { return l.nodes }

func (l *Local) nodeDir(name string) string { return filepath.Join(l.cfg.Dir, name) }

// LogPath is the node's log file (all its starts, appended).
func (l *Local) LogPath(name string) string { return filepath.Join(l.nodeDir(name), "cairnd.log") }

func (l *Local) clockFile(name string) string { return filepath.Join(l.nodeDir(name), "faketime") }

func (l *Local) index(name string) (int, error) {
	for i, n := range l.nodes {
		if n.Name == name {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("no node %q", name)
}

func (l *Local) uid(name string) int {
	i, _ := l.index(name)
	if l.cfg.UIDBase == 0 {
		return os.Getuid()
	}
	return l.cfg.UIDBase + i
}

// Start makes fresh node directories and starts every node.
func (l *Local) Start() error {
	for _, n := range l.nodes {
		if ln, err := net.Listen("tcp", n.ClientAddr); err != nil {
			return fmt.Errorf("%s: %v (another cluster on this address range? use another subnet)", n.ClientAddr, err)
		} else {
			ln.Close()
		}
		dir := l.nodeDir(n.Name)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(l.clockFile(n.Name), []byte("+0\n"), 0o644); err != nil {
			return err
		}
		if l.cfg.UIDBase != 0 {
			uid := l.uid(n.Name)
			for _, p := range []string{dir, filepath.Join(dir, "data"), l.clockFile(n.Name)} {
				if err := os.Chown(p, uid, uid); err != nil {
					return fmt.Errorf("chown %s to uid %d: %v", p, uid, err)
				}
			}
		}
	}
	if l.cfg.UIDBase != 0 {
		if err := l.ipt.setup(); err != nil {
			return err
		}
	}
	for _, n := range l.nodes {
		if err := l.StartNode(n.Name); err != nil {
			return err
		}
	}
	return nil
}

func (l *Local) args(name string) []string {
	host := l.nodes[0].Host
	var members []string
	for _, n := range l.nodes {
		members = append(members, fmt.Sprintf("%s=%s:%d", n.Name, n.Host, l.cfg.PeerPort))
		if n.Name == name {
			host = n.Host
		}
	}
	a := []string{
		"--cluster-name", l.cfg.Cluster,
		"--node-name", name,
		"--listen-address", host,
		"--client-port", strconv.Itoa(l.cfg.ClientPort),
		"--peer-port", strconv.Itoa(l.cfg.PeerPort),
		"--admin-port", strconv.Itoa(l.cfg.AdminPort),
		"--data-dir", filepath.Join(l.nodeDir(name), "data"),
		"--initial-cluster", strings.Join(members, ","),
		"--replication-factor", strconv.Itoa(l.cfg.RF),
	}
	return append(a, l.cfg.ExtraArgs...)
}

// StartNode starts (or restarts) one node on its data directory.
func (l *Local) StartNode(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.procs[name]; p != nil && !p.exited() {
		return fmt.Errorf("%s is already running", name)
	}
	bin := l.cfg.Binary
	env := []string{"PATH=/usr/bin:/bin"}
	if l.cfg.Faketime {
		bin = l.cfg.LibcBinary
		env = append(env, "LD_PRELOAD="+l.cfg.FaketimeLib,
			"FAKETIME_TIMESTAMP_FILE="+l.clockFile(name),
			"FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1")
	}
	logf, err := os.OpenFile(l.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== harness: starting %s at %s\n", name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, l.args(name)...)
	cmd.Env = env
	cmd.Dir = l.nodeDir(name)
	cmd.Stdout = logf
	cmd.Stderr = logf
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if l.cfg.UIDBase != 0 {
		uid := uint32(l.uid(name))
		attr.Credential = &syscall.Credential{Uid: uid, Gid: uid}
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "==== harness: %s exited: %v\n", name, p.err)
		logf.Close()
		if !p.expected.Load() {
			l.mu.Lock()
			l.crashes = append(l.crashes, fmt.Sprintf("%s exited on its own (%v); log %s", name, p.err, l.LogPath(name)))
			l.mu.Unlock()
		}
		close(p.done)
	}()
	l.procs[name] = p
	delete(l.paused, name)
	return nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (l *Local) proc(name string) *proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[name]
}

// Running: the process exists (it may be paused).
func (l *Local) Running(name string) bool {
	p := l.proc(name)
	return p != nil && !p.exited()
}

// Kill sends SIGKILL and waits for the process to end.
func (l *Local) Kill(name string) error {
	p := l.proc(name)
	if p == nil || p.exited() {
		return nil
	}
	p.expected.Store(true)
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not die after SIGKILL", name)
	}
	l.mu.Lock()
	delete(l.paused, name)
	l.mu.Unlock()
	return nil
}

// Pause stops the process with SIGSTOP.
func (l *Local) Pause(name string) error {
	p := l.proc(name)
	if p == nil || p.exited() {
		return fmt.Errorf("%s is not running", name)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		return err
	}
	l.mu.Lock()
	l.paused[name] = true
	l.mu.Unlock()
	return nil
}

// Resume continues a paused process.
func (l *Local) Resume(name string) error {
	p := l.proc(name)
	l.mu.Lock()
	delete(l.paused, name)
	l.mu.Unlock()
	if p == nil || p.exited() {
		return nil
	}
	return syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
}

// ResumeAll continues every process (paused or not: SIGCONT is harmless).
func (l *Local) ResumeAll() error {
	var first error
	for _, n := range l.nodes {
		if err := l.Resume(n.Name); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// stopNode: SIGTERM (drain), then SIGKILL after timeout.
func (l *Local) stopNode(name string, timeout time.Duration) error {
	p := l.proc(name)
	if p == nil || p.exited() {
		return nil
	}
	p.expected.Store(true)
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s exited after SIGTERM: %v", name, p.err)
		}
		return nil
	case <-time.After(timeout):
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not drain within %v; killed", name, timeout)
	}
}

// Stop drains every node (SIGTERM) and waits for them.
func (l *Local) Stop() error {
	var errs []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range l.nodes {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if err := l.stopNode(name, 25*time.Second); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		}(n.Name)
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Teardown heals, resumes, resets clocks, and stops every node; idempotent.
func (l *Local) Teardown() error {
	var errs []string
	if err := l.ipt.teardown(); err != nil && l.cfg.UIDBase != 0 {
		errs = append(errs, err.Error())
	}
	l.ResumeAll()
	l.ResetClocks()
	for _, n := range l.nodes {
		if p := l.proc(n.Name); p != nil && !p.exited() {
			if err := l.stopNode(n.Name, 10*time.Second); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// ---- partitions -------------------------------------------------------------

// Partition installs g's cuts (replacing any others).
func (l *Local) Partition(g Grudge) error {
	if l.cfg.UIDBase == 0 {
		return errors.New("partitions need nodes under their own uids (uid_base)")
	}
	var rules []iptRule
	for a, froms := range g {
		na, err := Find(l, a)
		if err != nil {
			return err
		}
		for _, b := range froms {
			nb, err := Find(l, b)
			if err != nil {
				return err
			}
			rules = append(rules, iptRule{srcHost: nb.Host, srcUID: l.uid(b), dstHost: na.Host})
		}
	}
	if err := l.ipt.replace(rules); err != nil {
		return err
	}
	l.mu.Lock()
	l.cut = len(rules) > 0
	l.mu.Unlock()
	return nil
}

// Heal removes every cut.
func (l *Local) Heal() error {
	if l.cfg.UIDBase == 0 {
		return nil
	}
	l.mu.Lock()
	l.cut = false
	l.mu.Unlock()
	return l.ipt.replace(nil)
}

// PartitionCheck cuts n1 from n2 and verifies with probe processes running
// as n1's uid that n1 can no longer reach n2's peer port -- from 127.0.0.1
// as cairnd's own connections do, and from n1's address as its gossip
// socket does -- and that it can again after healing. Needs no node
// running: the probe listens on n2's address itself.
func (l *Local) PartitionCheck() error {
	if l.cfg.UIDBase == 0 {
		return errors.New("nodes run under the harness's own uid (uid_base 0): no way to tell their traffic apart")
	}
	if os.Geteuid() != 0 {
		return errors.New("iptables needs root")
	}
	if len(l.nodes) < 2 {
		return errors.New("fewer than two nodes")
	}
	if err := l.ipt.setup(); err != nil {
		return err
	}
	a, b := l.nodes[0], l.nodes[1]
	ln, err := net.Listen("tcp", net.JoinHostPort(b.Host, "0"))
	if err != nil {
		return fmt.Errorf("probe listener on %s: %v", b.Host, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	target := ln.Addr().String()
	probe := func(src string) error { return runProbe(l.uid(a.Name), src, target) }
	for _, src := range []string{"", a.Host} {
		if err := probe(src); err != nil {
			return fmt.Errorf("probe before the cut failed (%v): cannot test partitions", err)
		}
	}
	if err := l.Partition(Grudge{b.Name: {a.Name}, a.Name: {b.Name}}); err != nil {
		return err
	}
	defer l.Heal()
	for _, src := range []string{"", a.Host} {
		if err := probe(src); err == nil {
			from := src
			if from == "" {
				from = "the default source address"
			}
			return fmt.Errorf("a process of %s's uid still reached %s from %s with the cut in place", a.Name, target, from)
		}
	}
	if err := l.Heal(); err != nil {
		return err
	}
	for _, src := range []string{"", a.Host} {
		if err := probe(src); err != nil {
			return fmt.Errorf("probe after healing failed: %v", err)
		}
	}
	return nil
}

// ---- clocks ---------------------------------------------------------------

// SetClock writes the node's libfaketime offset; it takes effect at the
// node's next clock reading.
func (l *Local) SetClock(name string, offset time.Duration) error {
	if !l.cfg.Faketime {
		return errors.New("nodes do not run under libfaketime")
	}
	if _, err := l.index(name); err != nil {
		return err
	}
	path := l.clockFile(name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(faketimeSpec(offset)+"\n"), 0o644); err != nil {
		return err
	}
	if l.cfg.UIDBase != 0 {
		os.Chown(tmp, l.uid(name), l.uid(name))
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	l.mu.Lock()
	if offset == 0 {
		delete(l.offsets, name)
	} else {
		l.offsets[name] = offset
	}
	l.mu.Unlock()
	return nil
}

// ResetClocks puts every node back on real time.
func (l *Local) ResetClocks() error {
	if !l.cfg.Faketime {
		return nil
	}
	var first error
	for _, n := range l.nodes {
		if err := l.SetClock(n.Name, 0); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ClockCheck verifies that libfaketime is loaded into the running nodes.
func (l *Local) ClockCheck() error {
	if !l.cfg.Faketime {
		return errors.New("nodes were not started under libfaketime (cairnd-libc)")
	}
	if l.cfg.FaketimeLib == "" {
		return errors.New("libfaketime not found (Debian package faketime / libfaketime)")
	}
	for _, n := range l.nodes {
		p := l.proc(n.Name)
		if p == nil || p.exited() {
			continue
		}
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.cmd.Process.Pid))
		if err != nil {
			return err
		}
		if !bytes.Contains(maps, []byte("libfaketime")) {
			return fmt.Errorf("libfaketime is not mapped into %s", n.Name)
		}
	}
	return nil
}

// ---- helpers --------------------------------------------------------------

// Ready asks a node's admin port whether it serves (/ready 200).
func Ready(n Node, timeout time.Duration) bool {
	cl := http.Client{Timeout: timeout}
	resp, err := cl.Get("http://" + n.AdminAddr + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// TailLog returns the last n lines of a file.
func TailLog(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
