package client

import (
	"strings"
	"testing"
	"time"
)

func TestPingSendsABareFrameAndTakesOK(t *testing.T) {
	f := newFake(t, "n1", func(r fakeReq) []byte {
		if r.typ == msgPing {
			return replyFrame(r.id, StatusOK, 9000, 0, nil, "")
		}
		return replyFrame(r.id, StatusProto, 9000, 0, nil, "unexpected")
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}, Timeout: 700 * time.Millisecond})
	for i := 0; i < 3; i++ {
		if err := c.Ping(); err != nil {
			t.Fatal(err)
		}
	}
	reqs := f.reqs()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		if r.typ != msgPing || len(r.args) != 0 || r.id == 0 {
			t.Fatalf("PING frame: %+v", r)
		}
	}
	if c.MaxHLC() != 9000 {
		t.Fatalf("hlc %d: the REPLY's clock is observed", c.MaxHLC())
	}
}

func TestPingReportsAnErrorReply(t *testing.T) {
	f := newFake(t, "n1", func(r fakeReq) []byte {
		return replyFrame(r.id, StatusProto, 1, 0, nil, "unknown request type 23")
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}, Timeout: 700 * time.Millisecond})
	err := c.Ping()
	if e := errStatus(t, err); e.Status != StatusProto || !strings.Contains(e.Message, "unknown request type") {
		t.Fatalf("ping of a node without PING: %v", err)
	}
	f.setHandle(func(r fakeReq) []byte { return nil }) // no answer at all
	c2 := newClient(t, Options{ContactPoints: []string{f.addr()}, Timeout: 50 * time.Millisecond,
		NoReplyGrace: 50 * time.Millisecond})
	if e := errStatus(t, c2.Ping()); e.Status != StatusNoReply {
		t.Fatalf("ping without an answer: %v", e)
	}
}

// Against a real cairnd ($CAIRND, as in cairnd_test.go).
func TestRealNodePing(t *testing.T) {
	n := startNode(t)
	c := newClient(t, Options{ContactPoints: []string{n.addr()}, Cluster: "gotest"})
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put([]byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(); err != nil {
		t.Fatalf("ping after a put: %v", err)
	}
}
