package workload

import (
	"errors"
	"testing"

	"cairn/jepsen/client"
	"cairn/jepsen/history"
)

func TestOutcomeIsFailOnlyWhenNothingWasDone(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, history.OK},
		{&client.Error{Status: client.StatusUnavailable, Sent: true}, history.Fail},
		{&client.Error{Status: client.StatusConnection, Sent: false}, history.Fail},
		{&client.Error{Status: client.StatusConnection, Sent: true}, history.Info},
		{&client.Error{Status: client.StatusTimeout, Sent: true}, history.Info},
		{&client.Error{Status: client.StatusNoReply, Sent: true}, history.Info},
		{&client.Error{Status: client.StatusClockSkew, Sent: true}, history.Info},
		{errors.New("something else"), history.Info},
	}
	for _, c := range cases {
		if got := Outcome(c.err); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
}

func TestRegisterKeysRotateAndSetProbesAreNeverAdded(t *testing.T) {
	r, err := New(Config{Kind: "register", Nodes: []string{"127.0.0.1:1"}, Processes: 4, PerKey: 2, OpsPerKey: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.groups) != 2 {
		t.Fatalf("%d groups", len(r.groups))
	}
	var keys []string
	for i := 0; i < 7; i++ {
		keys = append(keys, r.groupKey(0))
	}
	want := []string{"r0-0", "r0-0", "r0-0", "r0-1", "r0-1", "r0-1", "r0-2"}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("keys %v", keys)
		}
	}
	if r.groupKey(3) != "r1-0" {
		t.Fatal("process 3 is in group 1")
	}
	s, _ := New(Config{Kind: "set", Nodes: []string{"127.0.0.1:1"}, ProbeEvery: 5}, nil)
	defer s.Close()
	s.elements = 12
	probes := s.Probes()
	if len(probes) != 2 || probes[0] != "s5" || probes[1] != "s10" {
		t.Fatalf("probes %v", probes)
	}
}
