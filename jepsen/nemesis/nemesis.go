// Package nemesis injects faults into a cluster: network partitions (random
// halves, one node isolated, majorities ring, bridge), kill -9 and restart,
// SIGSTOP/SIGCONT, wall-clock offsets (small, within max_clock_offset; big,
// seconds to hours; strobing), and a combined mix. A Nemesis starts one
// fault at a time and stops (undoes) it; the runner alternates faults with
// quiet periods and heals everything at the end.
package nemesis

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"time"

	"cairn/jepsen/cluster"
)

// Nemesis injects one kind of fault.
type Nemesis interface {
	// Start injects a fault and describes it.
	Start(c cluster.Cluster, rng *rand.Rand) (string, error)
	// Stop undoes the fault Start injected and describes what it did.
	Stop(c cluster.Cluster) (string, error)
	// NeedsPartitions / NeedsClocks: what the cluster must support.
	NeedsPartitions() bool
	NeedsClocks() bool
}

// Names lists the nemeses New knows.
var Names = []string{
	"none", "partition", "partition-halves", "partition-one", "partition-ring", "partition-bridge",
	"kill", "pause", "clock", "clock-big", "clock-strobe", "combined",
}

// New makes a nemesis by name. maxOffset is the cluster's
// max_clock_offset_ms, which separates small from big clock skews.
func New(name string, maxOffset time.Duration) (Nemesis, error) {
	switch name {
	case "none":
		return nil, nil
	case "partition":
		return &partition{mode: "random"}, nil
	case "partition-halves", "partition-one", "partition-ring", "partition-bridge":
		return &partition{mode: strings.TrimPrefix(name, "partition-")}, nil
	case "kill":
		return &process{kill: true}, nil
	case "pause":
		return &process{}, nil
	case "clock":
		return &clock{mode: "small", max: maxOffset}, nil
	case "clock-big":
		return &clock{mode: "big", max: maxOffset}, nil
	case "clock-strobe":
		return &clock{mode: "strobe", max: maxOffset}, nil
	case "combined":
		return &combined{max: maxOffset}, nil
	}
	return nil, fmt.Errorf("unknown nemesis %q (%s)", name, strings.Join(Names, ", "))
}

// ---- partitions -----------------------------------------------------------

type partition struct{ mode string }

func (p *partition) NeedsPartitions() bool { return true }
func (p *partition) NeedsClocks() bool     { return false }

// Grudge builds a partition of nodes (in a random order) by mode.
func Grudge(mode string, nodes []string, rng *rand.Rand) (cluster.Grudge, string) {
	n := append([]string(nil), nodes...)
	rng.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
	if mode == "random" {
		modes := []string{"halves", "one", "ring", "bridge"}
		mode = modes[rng.Intn(len(modes))]
	}
	g := cluster.Grudge{}
	cut := func(a, b string) {
		g[a] = append(g[a], b)
		g[b] = append(g[b], a)
	}
	switch mode {
	case "one":
		for _, b := range n[1:] {
			cut(n[0], b)
		}
	case "ring":
		// Each node hears only its neighbours on a ring: with five nodes
		// every node sees a majority (itself and two), but no two nodes
		// see the same majority.
		if len(n) < 4 {
			return Grudge("halves", nodes, rng)
		}
		for i := range n {
			for j := i + 1; j < len(n); j++ {
				d := j - i
				if d != 1 && d != len(n)-1 {
					cut(n[i], n[j])
				}
			}
		}
	case "bridge":
		// Two halves that cannot see each other, and one node that sees
		// both.
		if len(n) < 3 {
			return Grudge("halves", nodes, rng)
		}
		bridge := n[0]
		rest := n[1:]
		a, b := rest[:len(rest)/2], rest[len(rest)/2:]
		for _, x := range a {
			for _, y := range b {
				cut(x, y)
			}
		}
		_ = bridge
	default: // halves
		mode = "halves"
		k := len(n) / 2
		for _, x := range n[:k] {
			for _, y := range n[k:] {
				cut(x, y)
			}
		}
	}
	for _, x := range nodes {
		if _, ok := g[x]; !ok {
			g[x] = nil
		}
	}
	return g, mode
}

func describeGrudge(mode string, nodes []string, g cluster.Grudge) string {
	if comps := cluster.Components(sorted(nodes), g); comps != "" {
		return fmt.Sprintf("partition %s: %s", mode, comps)
	}
	// not a clean split (ring, bridge): who hears whom
	var parts []string
	for _, a := range sorted(nodes) {
		var hears []string
		for _, b := range sorted(nodes) {
			if a == b {
				continue
			}
			cut := false
			for _, x := range g[a] {
				if x == b {
					cut = true
				}
			}
			if !cut {
				hears = append(hears, b)
			}
		}
		parts = append(parts, a+"~"+strings.Join(hears, ","))
	}
	return fmt.Sprintf("partition %s: %s", mode, strings.Join(parts, " "))
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func (p *partition) Start(c cluster.Cluster, rng *rand.Rand) (string, error) {
	nodes := cluster.Names(c)
	g, mode := Grudge(p.mode, nodes, rng)
	if err := c.Partition(g); err != nil {
		return "", err
	}
	return describeGrudge(mode, nodes, g), nil
}

func (p *partition) Stop(c cluster.Cluster) (string, error) {
	return "heal partition", c.Heal()
}

// ---- processes: kill -9 / SIGSTOP ---------------------------------------

type process struct {
	kill    bool
	victims []string
}

func (p *process) NeedsPartitions() bool { return false }
func (p *process) NeedsClocks() bool     { return false }

// victims picks 1..minority nodes.
func victims(nodes []string, rng *rand.Rand) []string {
	n := append([]string(nil), nodes...)
	rng.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
	k := 1
	if minority := (len(n) - 1) / 2; minority > 1 && rng.Intn(2) == 0 {
		k = minority
	}
	return sorted(n[:k])
}

func (p *process) Start(c cluster.Cluster, rng *rand.Rand) (string, error) {
	p.victims = victims(cluster.Names(c), rng)
	for _, v := range p.victims {
		var err error
		if p.kill {
			err = c.Kill(v)
		} else {
			err = c.Pause(v)
		}
		if err != nil {
			return "", err
		}
	}
	if p.kill {
		return "kill -9 " + strings.Join(p.victims, " "), nil
	}
	return "pause (SIGSTOP) " + strings.Join(p.victims, " "), nil
}

func (p *process) Stop(c cluster.Cluster) (string, error) {
	v := p.victims
	p.victims = nil
	for _, name := range v {
		var err error
		if p.kill {
			if !c.Running(name) {
				err = c.StartNode(name)
			}
		} else {
			err = c.Resume(name)
		}
		if err != nil {
			return "", err
		}
	}
	if p.kill {
		return "restart " + strings.Join(v, " "), nil
	}
	return "resume (SIGCONT) " + strings.Join(v, " "), nil
}

// ---- clocks ------------------------------------------------------------

type clock struct {
	mode   string // small | big | strobe
	max    time.Duration
	victim string
	stop   chan struct{}
	done   sync.WaitGroup
}

func (k *clock) NeedsPartitions() bool { return false }
func (k *clock) NeedsClocks() bool     { return true }

// SmallOffset is within max_clock_offset: the node's writes must succeed
// and win over earlier ones.
func SmallOffset(max time.Duration, rng *rand.Rand) time.Duration {
	lo, hi := max/10, max*8/10
	d := lo + time.Duration(rng.Int63n(int64(hi-lo)+1))
	if rng.Intn(2) == 0 {
		d = -d
	}
	return d.Round(time.Millisecond)
}

// BigOffsets are beyond max_clock_offset: the node must refuse or be
// refused cleanly and lose no acknowledged write.
var BigOffsets = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Hour}

func (k *clock) Start(c cluster.Cluster, rng *rand.Rand) (string, error) {
	nodes := cluster.Names(c)
	k.victim = nodes[rng.Intn(len(nodes))]
	switch k.mode {
	case "small", "big":
		var d time.Duration
		if k.mode == "small" {
			d = SmallOffset(k.max, rng)
		} else {
			d = BigOffsets[rng.Intn(len(BigOffsets))]
			if rng.Intn(2) == 0 {
				d = -d
			}
		}
		if err := c.SetClock(k.victim, d); err != nil {
			return "", err
		}
		return fmt.Sprintf("clock %s %s on %s", k.mode, cluster.FormatOffset(d), k.victim), nil
	}
	// strobe: flip between real time and an offset every 20..200 ms
	d := SmallOffset(k.max, rng)
	if rng.Intn(3) == 0 {
		d = BigOffsets[0]
		if rng.Intn(2) == 0 {
			d = -d
		}
	}
	period := time.Duration(20+rng.Intn(181)) * time.Millisecond
	k.stop = make(chan struct{})
	k.done.Add(1)
	victim := k.victim
	go func() {
		defer k.done.Done()
		on := false
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-k.stop:
				return
			case <-t.C:
				on = !on
				off := time.Duration(0)
				if on {
					off = d
				}
				c.SetClock(victim, off)
			}
		}
	}()
	return fmt.Sprintf("clock strobe 0 <-> %s every %v on %s", cluster.FormatOffset(d), period, victim), nil
}

func (k *clock) Stop(c cluster.Cluster) (string, error) {
	if k.stop != nil {
		close(k.stop)
		k.done.Wait()
		k.stop = nil
	}
	v := k.victim
	k.victim = ""
	if v == "" {
		return "clock reset (nothing to do)", nil
	}
	return "clock reset on " + v, c.SetClock(v, 0)
}

// ---- combined --------------------------------------------------------------

type combined struct {
	max     time.Duration
	current Nemesis
}

func (m *combined) NeedsPartitions() bool { return true }
func (m *combined) NeedsClocks() bool     { return true }

func (m *combined) Start(c cluster.Cluster, rng *rand.Rand) (string, error) {
	choices := []Nemesis{
		&partition{mode: "random"}, &process{kill: true}, &process{},
		&clock{mode: "small", max: m.max}, &clock{mode: "strobe", max: m.max},
	}
	m.current = choices[rng.Intn(len(choices))]
	return m.current.Start(c, rng)
}

func (m *combined) Stop(c cluster.Cluster) (string, error) {
	if m.current == nil {
		return "nothing to undo", nil
	}
	cur := m.current
	m.current = nil
	return cur.Stop(c)
}
