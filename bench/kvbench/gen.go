package main

// Key choice and operation mix, the same for every store.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// ---- keys -------------------------------------------------------------------

// keyLen is the length of every key: "user" and 12 decimal digits.
const keyLen = 16

// appendKey appends record i's key ("user000000000042") to b.
func appendKey(b []byte, i uint64) []byte {
	b = append(b, "user"...)
	var d [20]byte
	s := strconv.AppendUint(d[:0], i, 10)
	for n := len(s); n < keyLen-4; n++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// KeyChooser picks a record index in [0, n). Implementations are
// read-only after construction; the random source belongs to the caller
// (one per goroutine).
type KeyChooser interface {
	Next(r *rand.Rand) uint64
}

type uniformKeys struct{ n uint64 }

func (u uniformKeys) Next(r *rand.Rand) uint64 { return r.Uint64N(u.n) }

// zipfian is YCSB's ZipfianGenerator over [0, items): item 0 is the most
// popular, P(i) proportional to 1/(i+1)^theta (Gray et al., "Quickly
// Generating Billion-Record Synthetic Databases", SIGMOD 1994).
type zipfian struct {
	items               uint64
	theta, alpha, zetan float64
	eta, half           float64
}

// zeta is sum_{i=1..n} 1/i^theta.
func zeta(n uint64, theta float64) float64 {
	s := 0.0
	for i := uint64(1); i <= n; i++ {
		s += 1 / math.Pow(float64(i), theta)
	}
	return s
}

func newZipfian(items uint64, theta, zetan float64) *zipfian {
	z := &zipfian{items: items, theta: theta, zetan: zetan}
	z.alpha = 1 / (1 - theta)
	zeta2 := zeta(2, theta)
	z.eta = (1 - math.Pow(2/float64(items), 1-theta)) / (1 - zeta2/zetan)
	z.half = 1 + math.Pow(0.5, theta)
	return z
}

func (z *zipfian) Next(r *rand.Rand) uint64 {
	u := r.Float64()
	uz := u * z.zetan
	if uz < 1 {
		return 0
	}
	if uz < z.half {
		return 1
	}
	v := uint64(float64(z.items) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if v >= z.items {
		v = z.items - 1
	}
	return v
}

// scrambledZipfian is YCSB's ScrambledZipfianGenerator: a zipfian over
// 10^10 items (YCSB's constant, with its precomputed zeta for theta 0.99)
// hashed with FNV-1a 64 onto [0, n), so the popular records are spread over
// the key space instead of being the first ones.
type scrambledZipfian struct {
	n uint64
	z *zipfian
}

const (
	ZipfianConstant  = 0.99
	ycsbItemCount    = 10_000_000_000
	ycsbZetanItemCnt = 26.46902820178302 // zeta(10^10, 0.99), as in YCSB
)

func newScrambledZipfian(n uint64) *scrambledZipfian {
	return &scrambledZipfian{n: n, z: newZipfian(ycsbItemCount, ZipfianConstant, ycsbZetanItemCnt)}
}

// fnv64 is YCSB's Utils.fnvhash64 (FNV-1a over the 8 little-endian bytes).
func fnv64(v uint64) uint64 {
	h := uint64(0xCBF29CE484222325)
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= 1099511628211
		v >>= 8
	}
	return h
}

func (s *scrambledZipfian) Next(r *rand.Rand) uint64 {
	return fnv64(s.z.Next(r)) % s.n
}

func newKeyChooser(dist string, n uint64) (KeyChooser, error) {
	if n == 0 {
		return nil, fmt.Errorf("no records")
	}
	switch dist {
	case "uniform":
		return uniformKeys{n}, nil
	case "zipfian":
		return newScrambledZipfian(n), nil
	}
	return nil, fmt.Errorf("bad key distribution %q (uniform or zipfian)", dist)
}

// ---- operations -------------------------------------------------------------

// Op is one kind of operation.
type Op int

const (
	OpRead   Op = iota // one GET
	OpUpdate           // one PUT of an existing record
	OpRMW              // GET then PUT of the same key; timed as a pair
	OpPing             // a null request (PING, or INFO where PING is unknown)
	numOps
)

var opNames = [numOps]string{"read", "update", "rmw", "ping"}

func (o Op) String() string { return opNames[o] }

// Mix is a workload: the share of each op, summing to 1.
type Mix struct {
	Name  string
	Share [numOps]float64
}

// mixes are YCSB's core workloads A, B, C and F, plus W (write only) and P
// (the ping floor).
var mixes = map[string]Mix{
	"A": {Name: "A", Share: [numOps]float64{OpRead: 0.5, OpUpdate: 0.5}},
	"B": {Name: "B", Share: [numOps]float64{OpRead: 0.95, OpUpdate: 0.05}},
	"C": {Name: "C", Share: [numOps]float64{OpRead: 1}},
	"F": {Name: "F", Share: [numOps]float64{OpRead: 0.5, OpRMW: 0.5}},
	"W": {Name: "W", Share: [numOps]float64{OpUpdate: 1}},
	"P": {Name: "P", Share: [numOps]float64{OpPing: 1}},
}

func parseMix(s string) (Mix, error) {
	m, ok := mixes[strings.ToUpper(s)]
	if !ok {
		return Mix{}, fmt.Errorf("bad workload %q (A, B, C, F, W or P)", s)
	}
	return m, nil
}

// Pick draws one op by the mix's shares.
func (m *Mix) Pick(r *rand.Rand) Op {
	u := r.Float64()
	last := OpRead
	for o := Op(0); o < numOps; o++ {
		if m.Share[o] == 0 {
			continue
		}
		last = o
		if u < m.Share[o] {
			return o
		}
		u -= m.Share[o]
	}
	return last
}

// readsData says whether the mix reads records (so they should be loaded).
func (m *Mix) readsData() bool { return m.Share[OpRead] > 0 || m.Share[OpRMW] > 0 }
