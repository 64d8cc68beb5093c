package nemesis

import (
	"math/rand"
	"testing"
	"time"

	"cairn/jepsen/cluster"
)

var five = []string{"n1", "n2", "n3", "n4", "n5"}

func hears(g cluster.Grudge, a, b string) bool {
	for _, x := range g[a] {
		if x == b {
			return false
		}
	}
	return true
}

// every grudge is symmetric and never cuts a node from itself
func checkShape(t *testing.T, g cluster.Grudge) {
	t.Helper()
	for a, cut := range g {
		for _, b := range cut {
			if a == b {
				t.Fatalf("%s cut from itself", a)
			}
			if hears(g, b, a) {
				t.Fatalf("asymmetric: %s does not hear %s but %s hears %s", a, b, b, a)
			}
		}
	}
}

func TestGrudgeShapes(t *testing.T) {
	for seed := int64(0); seed < 50; seed++ {
		rng := rand.New(rand.NewSource(seed))
		g, mode := Grudge("halves", five, rng)
		checkShape(t, g)
		if mode != "halves" || cluster.Components(five, g) == "" {
			t.Fatalf("halves: %v", g)
		}
		// 2 | 3: each node hears 1 or 2 others
		for _, a := range five {
			n := 0
			for _, b := range five {
				if a != b && hears(g, a, b) {
					n++
				}
			}
			if n != 1 && n != 2 {
				t.Fatalf("halves: %s hears %d", a, n)
			}
		}

		g, _ = Grudge("one", five, rng)
		checkShape(t, g)
		isolated := 0
		for _, a := range five {
			if len(g[a]) == 4 {
				isolated++
			}
		}
		if isolated != 1 {
			t.Fatalf("one: %v", g)
		}

		g, _ = Grudge("ring", five, rng)
		checkShape(t, g)
		for _, a := range five {
			if len(g[a]) != 2 { // hears exactly its two neighbours
				t.Fatalf("ring: %s cut from %v", a, g[a])
			}
		}
		if cluster.Components(five, g) != "" {
			t.Fatal("a ring is not a clean split")
		}

		g, _ = Grudge("bridge", five, rng)
		checkShape(t, g)
		bridges := 0
		for _, a := range five {
			switch len(g[a]) {
			case 0:
				bridges++
			case 2:
			default:
				t.Fatalf("bridge: %s cut from %v", a, g[a])
			}
		}
		if bridges != 1 {
			t.Fatalf("bridge: %d bridges in %v", bridges, g)
		}
	}
}

func TestRandomPartitionUsesEveryMode(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		_, mode := Grudge("random", five, rng)
		seen[mode] = true
	}
	if len(seen) != 4 {
		t.Fatalf("modes seen: %v", seen)
	}
}

func TestComponentsNamesCleanSplits(t *testing.T) {
	g := cluster.Grudge{"n1": {"n3"}, "n2": {"n3"}, "n3": {"n1", "n2"}}
	if got := cluster.Components([]string{"n1", "n2", "n3"}, g); got != "n1 n2 | n3" {
		t.Fatalf("got %q", got)
	}
}

func TestVictimsAreAMinority(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	sizes := map[int]bool{}
	for i := 0; i < 100; i++ {
		v := victims(five, rng)
		if len(v) < 1 || len(v) > 2 {
			t.Fatalf("victims %v", v)
		}
		sizes[len(v)] = true
	}
	if !sizes[1] || !sizes[2] {
		t.Fatalf("sizes %v", sizes)
	}
}

func TestClockOffsets(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	max := 500 * time.Millisecond
	for i := 0; i < 1000; i++ {
		d := SmallOffset(max, rng)
		if d < 0 {
			d = -d
		}
		if d < max/10 || d > max*8/10 {
			t.Fatalf("small offset %v outside (%v, %v)", d, max/10, max*8/10)
		}
	}
	for _, d := range BigOffsets {
		if d <= max {
			t.Fatalf("big offset %v within max", d)
		}
	}
}

func TestNewKnowsEveryName(t *testing.T) {
	for _, n := range Names {
		nem, err := New(n, time.Second)
		if err != nil || (n != "none") != (nem != nil) {
			t.Fatalf("%s: %v %v", n, nem, err)
		}
	}
	if _, err := New("meteor", time.Second); err == nil {
		t.Fatal("unknown nemesis accepted")
	}
}
