package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"cairn/jepsen/client"
)

func TestHistPercentilesOfKnownData(t *testing.T) {
	h := &Hist{}
	// 1..100000 microseconds, in nanoseconds, in a shuffled order.
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]uint64, 100000)
	for i := range vals {
		vals[i] = uint64(i+1) * 1000
	}
	r.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	for _, v := range vals {
		h.Record(v)
	}
	for _, p := range []float64{1, 50, 90, 99, 99.9, 100} {
		want := math.Ceil(p/100*100000) * 1000
		got := h.Percentile(p)
		if math.Abs(got-want)/want > 1.0/256 {
			t.Errorf("p%v = %.0f, want %.0f within 0.4%%", p, got, want)
		}
	}
	if h.Max() != 100000*1000 || h.Count() != 100000 || math.Abs(h.Mean()-50000.5*1000) > 1e-6*h.Mean() {
		t.Fatalf("max %d count %d mean %f", h.Max(), h.Count(), h.Mean())
	}
	// Small values are exact.
	e := &Hist{}
	for v := uint64(0); v < 256; v++ {
		e.Record(v)
	}
	if e.Percentile(50) != 127 || e.Percentile(100) != 255 {
		t.Fatalf("exact range: p50 %v p100 %v", e.Percentile(50), e.Percentile(100))
	}
	// Merging two halves gives the same answers as one histogram.
	a, b := &Hist{}, &Hist{}
	for i, v := range vals {
		if i%2 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(b)
	for _, p := range []float64{50, 99, 99.9} {
		if a.Percentile(p) != h.Percentile(p) {
			t.Fatalf("merged p%v %v != %v", p, a.Percentile(p), h.Percentile(p))
		}
	}
}

func TestHistBucketsAreContiguous(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		i := bucketOf(v)
		if i != prev && i != prev+1 {
			t.Fatalf("value %d: bucket %d after %d", v, i, prev)
		}
		lo, w := bucketRange(i)
		if v < lo || v >= lo+w {
			t.Fatalf("value %d in bucket %d [%d, +%d)", v, i, lo, w)
		}
		if v >= 256 && float64(w)/float64(lo) > 1.0/128 {
			t.Fatalf("bucket %d too wide: %d at %d", i, w, lo)
		}
		prev = i
	}
	if bucketOf(math.MaxUint64) != histBuckets-1 || bucketOf(1<<46) >= histBuckets {
		t.Fatal("top buckets")
	}
}

func TestZipfianIsSkewedAndInRange(t *testing.T) {
	const n = 10000
	const draws = 500000
	z := newScrambledZipfian(n)
	r := rand.New(rand.NewPCG(3, 4))
	counts := make([]int, n)
	for i := 0; i < draws; i++ {
		k := z.Next(r)
		if k >= n {
			t.Fatalf("key %d out of range", k)
		}
		counts[k]++
	}
	sorted := append([]int(nil), counts...)
	sort.Sort(sort.Reverse(sort.IntSlice(sorted)))
	top := 0
	for _, c := range sorted[:n/100] {
		top += c
	}
	// Uniform would give the top 1% of keys about 1% of draws (a little
	// more by chance); zipfian 0.99 gives them a large share.
	if share := float64(top) / draws; share < 0.2 {
		t.Fatalf("top 1%% of keys got %.1f%% of draws: not skewed", 100*share)
	}
	// Scrambled: the most popular key is not simply key 0.
	hottest := 0
	for k, c := range counts {
		if c > counts[hottest] {
			hottest = k
		}
	}
	if hottest == 0 {
		t.Fatal("hottest key is 0: not scrambled")
	}
	// The unscrambled generator's item 0 is the most popular and its
	// frequency falls with the rank.
	zz := newZipfian(1000, ZipfianConstant, zeta(1000, ZipfianConstant))
	c := make([]int, 1000)
	for i := 0; i < draws; i++ {
		c[zz.Next(r)]++
	}
	if !(c[0] > c[1] && c[1] > c[10] && c[10] > c[500]) {
		t.Fatalf("zipfian counts not falling: %d %d %d %d", c[0], c[1], c[10], c[500])
	}
	u := uniformKeys{7}
	for i := 0; i < 1000; i++ {
		if u.Next(r) >= 7 {
			t.Fatal("uniform out of range")
		}
	}
}

func TestWorkloadMixRatios(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const draws = 200000
	for name, m := range mixes {
		var got [numOps]int
		for i := 0; i < draws; i++ {
			got[m.Pick(r)]++
		}
		for o := Op(0); o < numOps; o++ {
			share := float64(got[o]) / draws
			if math.Abs(share-m.Share[o]) > 0.01 {
				t.Errorf("workload %s: %s share %.3f, want %.3f", name, o, share, m.Share[o])
			}
		}
	}
	if _, err := parseMix("z"); err == nil {
		t.Fatal("bad workload accepted")
	}
}

func TestKeysHaveFixedLength(t *testing.T) {
	for _, i := range []uint64{0, 42, 999999999999} {
		k := appendKey(nil, i)
		if len(k) != keyLen || !strings.HasPrefix(string(k), "user") {
			t.Fatalf("key %q", k)
		}
	}
	if string(appendKey(nil, 42)) != "user000000000042" {
		t.Fatal(string(appendKey(nil, 42)))
	}
}

func runJSON(t *testing.T, args ...string) (runOut, int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := run(append(args, "-json"), &out, &errb)
	var o runOut
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(line, `"phase":"run"`) {
			if err := json.Unmarshal([]byte(line), &o); err != nil {
				t.Fatalf("json: %v: %s", err, line)
			}
		}
	}
	return o, rc, errb.String()
}

func TestNullServerRunCompletesWithoutErrors(t *testing.T) {
	for _, w := range []string{"A", "F", "W", "P"} {
		o, rc, stderr := runJSON(t, "-store", "null", "-workload", w, "-records", "1000", "-dist", "zipfian",
			"-concurrency", "8", "-connections", "2", "-duration", "300ms", "-warmup", "100ms", "-load")
		if rc != 0 || o.Errors != 0 || o.Ops == 0 {
			t.Fatalf("workload %s: rc %d, %d ops, %d errors\n%s", w, rc, o.Ops, o.Errors, stderr)
		}
		if w == "F" && (o.ByOp["rmw"].Ops == 0 || o.ByOp["read"].Ops == 0) {
			t.Fatalf("workload F by op: %+v", o.ByOp)
		}
		if w == "P" && o.PingVia != "PING" {
			t.Fatalf("ping via %q", o.PingVia)
		}
	}
}

func TestNullServerAnswersTheDriver(t *testing.T) {
	ns, err := startNullServer("127.0.0.1:0", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := client.New(client.Options{ContactPoints: []string{ns.Addr()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put([]byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get([]byte("k"), nil)
	if err != nil || !r.Found || string(r.Value) != "vvvvv" {
		t.Fatalf("get: %+v %v", r, err)
	}
	if _, err := c.Info(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LocalGet([]byte("k")); client.StatusOf(err) != client.StatusProto {
		t.Fatalf("an unknown type gets ProtocolError: %v", err)
	}
}

func TestUnreachableCairnFailsCleanly(t *testing.T) {
	_, rc, stderr := runJSON(t, "-store", "cairn", "-hosts", "127.0.0.1:1", "-duration", "100ms", "-timeout", "200ms")
	if rc != 2 || !strings.Contains(stderr, "cannot reach") {
		t.Fatalf("rc %d: %s", rc, stderr)
	}
}
