package cluster

import (
	"testing"
	"time"
)

func TestFaketimeSpec(t *testing.T) {
	cases := map[time.Duration]string{
		0:                                      "+0",
		150 * time.Millisecond:                 "+0.150",
		-350 * time.Millisecond:                "-0.350",
		2 * time.Hour:                          "+7200.000",
		-(90*time.Second + 5*time.Millisecond): "-90.005",
	}
	for d, want := range cases {
		if got := faketimeSpec(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

func TestIptablesChainNamesFitAndDifferBySubnet(t *testing.T) {
	a, b := newIptables("127.0.5"), newIptables("127.0.6")
	if a.in == b.in || a.out == b.out || a.in == a.out {
		t.Fatalf("%+v %+v", a, b)
	}
	for _, n := range []string{a.in, a.out} {
		if len(n) > 28 {
			t.Fatalf("chain name %q too long", n)
		}
	}
}

func TestGrudgeString(t *testing.T) {
	g := Grudge{"n1": {"n2"}, "n2": {"n1"}, "n3": nil}
	if s := g.String(); s != "n1 -/- n2; n2 -/- n1" {
		t.Fatalf("%q", s)
	}
	if s := (Grudge{}).String(); s != "no cuts" {
		t.Fatalf("%q", s)
	}
}
