// Package cluster runs a Cairn cluster for a test and injects faults into
// it. A Cluster is either local processes (Local: each node a cairnd on its
// own loopback address, started and stopped by the harness) or the
// docker-compose deployment (Docker). Both offer the same faults: network
// partitions, kill -9 and restart, SIGSTOP/SIGCONT, and wall-clock offsets.
//
// Every fault a Cluster injects is remembered so that Teardown (and Heal,
// Resume, ResetClocks) can undo it, including after a failed run.
package cluster

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Node is one member of the cluster as the harness addresses it.
type Node struct {
	Name       string // n1, n2, ...
	Host       string // the address it listens on (127.0.5.1, or a container's)
	ClientAddr string // host:port of its client port, as the harness reaches it
	AdminAddr  string // host:port of its admin HTTP port, as the harness reaches it
}

// Grudge says, for each node, the nodes it must not hear from: Grudge[a]
// contains b when packets from b to a are dropped. Partitions here are
// symmetric: b is in Grudge[a] exactly when a is in Grudge[b].
type Grudge map[string][]string

// String lists the grudge's components, e.g. "n1 n2 | n3 n4 n5" for
// halves, or "n1: -n2 -n3; ..." when it is not a clean split.
func (g Grudge) String() string {
	names := make([]string, 0, len(g))
	for n := range g {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		if len(g[n]) == 0 {
			continue
		}
		cut := append([]string(nil), g[n]...)
		sort.Strings(cut)
		parts = append(parts, n+" -/- "+strings.Join(cut, ","))
	}
	if len(parts) == 0 {
		return "no cuts"
	}
	return strings.Join(parts, "; ")
}

// Components groups nodes into the halves of a clean split ("a b | c d"),
// or returns "" when the grudge is not one.
func Components(nodes []string, g Grudge) string {
	cut := func(a, b string) bool {
		for _, x := range g[a] {
			if x == b {
				return true
			}
		}
		return false
	}
	var comps [][]string
	seen := map[string]bool{}
	for _, n := range nodes {
		if seen[n] {
			continue
		}
		comp := []string{n}
		seen[n] = true
		for _, m := range nodes {
			if !seen[m] && !cut(n, m) {
				comp = append(comp, m)
				seen[m] = true
			}
		}
		comps = append(comps, comp)
	}
	// a clean split: connected within, cut across
	for i, c := range comps {
		for _, a := range c {
			for _, b := range c {
				if a != b && cut(a, b) {
					return ""
				}
			}
			for j, d := range comps {
				if i == j {
					continue
				}
				for _, b := range d {
					if !cut(a, b) {
						return ""
					}
				}
			}
		}
	}
	var s []string
	for _, c := range comps {
		s = append(s, strings.Join(c, " "))
	}
	return strings.Join(s, " | ")
}

// Cluster is a running Cairn cluster the harness controls.
type Cluster interface {
	// Kind is "local" or "docker".
	Kind() string
	Nodes() []Node
	// Start brings up every node (fresh data); Stop shuts every node down
	// gracefully. Teardown undoes every fault and stops everything, even
	// after errors; it is safe to call more than once.
	Start() error
	Stop() error
	Teardown() error

	// StartNode restarts one node on its existing data.
	StartNode(name string) error
	// Kill sends SIGKILL (kill -9) and waits for the process to end.
	Kill(name string) error
	Running(name string) bool
	Pause(name string) error // SIGSTOP
	Resume(name string) error
	ResumeAll() error

	// Partition replaces the current cuts with g; Heal removes them all.
	Partition(g Grudge) error
	Heal() error
	// PartitionCheck reports whether cuts work here (and why not).
	PartitionCheck() error

	// SetClock offsets a node's wall clock from real time (0: real time).
	SetClock(name string, offset time.Duration) error
	ResetClocks() error
	// ClockCheck reports whether clocks can be offset here (and why not).
	ClockCheck() error

	// LogPath is where a node's log can be read after the run ("" if none).
	LogPath(name string) string
}

// Names returns the node names of c in order.
func Names(c Cluster) []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

// Find returns the node called name.
func Find(c Cluster, name string) (Node, error) {
	for _, n := range c.Nodes() {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("no node %q", name)
}

// FormatOffset prints a clock offset as "+2h0m0s" / "-350ms".
func FormatOffset(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// faketimeSpec is the offset in libfaketime's timestamp-file syntax:
// "+0", "+12.345", "-7200" (seconds).
func faketimeSpec(d time.Duration) string {
	if d == 0 {
		return "+0"
	}
	sign := "+"
	if d < 0 {
		sign = "-"
		d = -d
	}
	return fmt.Sprintf("%s%d.%03d", sign, d/time.Second, (d%time.Second)/time.Millisecond)
}
