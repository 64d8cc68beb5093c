package runner

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"cairn/jepsen/checker"
	"cairn/jepsen/client"
	"cairn/jepsen/cluster"
)

// Divergence is a key whose replicas hold different cells.
type Divergence struct {
	Key   string            `json:"key"`
	Cells map[string]string `json:"cells"` // replica -> its cell
}

// ConvergenceResult: after healing and hint delivery, does every replica
// of every written key hold the same cell? Each replica is read directly
// (LOCAL_GET), without coordination or repair.
type ConvergenceResult struct {
	Verdict    string        `json:"verdict"`
	Keys       int           `json:"keys"`
	Reads      int           `json:"reads"`
	Diverged   []Divergence  `json:"diverged,omitempty"`
	Unreadable []string      `json:"unreadable,omitempty"`
	Elapsed    time.Duration `json:"elapsed"`
}

// Summary is one line for the report.
func (c ConvergenceResult) Summary() string {
	s := fmt.Sprintf("%d keys, %d replica reads: %d diverged, %d unreadable", c.Keys, c.Reads,
		len(c.Diverged), len(c.Unreadable))
	for i, d := range c.Diverged {
		if i == 3 {
			s += fmt.Sprintf("; ... (%d in all)", len(c.Diverged))
			break
		}
		var reps []string
		for r := range d.Cells {
			reps = append(reps, r)
		}
		sort.Strings(reps)
		var cells []string
		for _, r := range reps {
			cells = append(cells, r+"="+d.Cells[r])
		}
		s += fmt.Sprintf("; %s: %s", d.Key, strings.Join(cells, " "))
	}
	if len(c.Unreadable) > 0 {
		s += "; unreadable: " + strings.Join(firstN(c.Unreadable, 5), ", ")
	}
	return s
}

// CheckConvergence reads every key on each of its replicas.
func CheckConvergence(c cluster.Cluster, clusterName string, keys []string) ConvergenceResult {
	t0 := time.Now()
	res := ConvergenceResult{Keys: len(keys)}
	byName := map[string]*client.Client{}
	var names []string
	for _, n := range c.Nodes() {
		cl, err := nodeClient(n, clusterName)
		if err != nil {
			continue
		}
		defer cl.Close()
		byName[n.Name] = cl
		names = append(names, n.Name)
	}
	type outcome struct {
		key     string
		cells   map[string]client.Cell
		reads   int
		problem string
	}
	jobs := make(chan string)
	outs := make(chan outcome)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for k := range jobs {
				o := outcome{key: k, cells: map[string]client.Cell{}}
				var ring *client.Ring
				var err error
				for i := 0; i < len(names); i++ { // any node can say where the key lives
					if ring, err = byName[names[(w+i)%len(names)]].Ring([]byte(k)); err == nil {
						break
					}
				}
				if err != nil {
					o.problem = "ring: " + err.Error()
					outs <- o
					continue
				}
				for _, idx := range ring.Replicas {
					name := ring.Nodes[idx].Name
					cl := byName[name]
					if cl == nil {
						o.problem = "no client for replica " + name
						break
					}
					var cell client.Cell
					for attempt := 0; attempt < 3; attempt++ {
						if cell, err = cl.LocalGet([]byte(k)); err == nil {
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
					if err != nil {
						o.problem = name + ": " + err.Error()
						break
					}
					o.reads++
					o.cells[name] = cell
				}
				outs <- o
			}
		}(w)
	}
	go func() {
		for _, k := range keys {
			jobs <- k
		}
		close(jobs)
		wg.Wait()
		close(outs)
	}()
	for o := range outs {
		res.Reads += o.reads
		if o.problem != "" {
			res.Unreadable = append(res.Unreadable, o.key+" ("+o.problem+")")
			continue
		}
		var first *client.Cell
		same := true
		for _, cell := range o.cells {
			cell := cell
			if first == nil {
				first = &cell
			} else if !first.Equal(cell) {
				same = false
			}
		}
		if !same {
			d := Divergence{Key: o.key, Cells: map[string]string{}}
			for r, cell := range o.cells {
				d.Cells[r] = cell.String()
			}
			res.Diverged = append(res.Diverged, d)
		}
	}
	sort.Slice(res.Diverged, func(i, j int) bool { return res.Diverged[i].Key < res.Diverged[j].Key })
	sort.Strings(res.Unreadable)
	switch {
	case len(res.Diverged) > 0:
		res.Verdict = checker.Invalid
	case len(res.Unreadable) > 0 || len(byName) < len(c.Nodes()):
		res.Verdict = checker.Unknown
	default:
		res.Verdict = checker.Valid
	}
	res.Elapsed = time.Since(t0)
	return res
}
