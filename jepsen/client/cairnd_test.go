package client

// The driver against a real cairnd: a one-node cluster on 127.0.0.1 with
// free ports. The binary is $CAIRND, else ../../build/node/cairnd. When it
// cannot be found the test is skipped -- unless CAIRN_JEPSEN_REQUIRE_CAIRND
// is set (scripts/test.sh sets it), and then it fails.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type realNode struct {
	t      *testing.T
	bin    string
	dir    string
	client int
	peer   int
	admin  int
	cmd    *exec.Cmd
	log    *bytes.Buffer
}

func freePort(t *testing.T) int {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// gossip also binds UDP on the peer port
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			u.Close()
			return port
		}
	}
}

func cairndPath(t *testing.T) string {
	p := os.Getenv("CAIRND")
	if p == "" {
		p = filepath.Join("..", "..", "build", "node", "cairnd")
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CAIRN_JEPSEN_REQUIRE_CAIRND") != "" {
			t.Fatalf("cairnd not found at %s (set CAIRND)", p)
		}
		t.Skipf("cairnd not found at %s: build Cairn or set CAIRND", p)
	}
	return p
}

func startNode(t *testing.T) *realNode {
	n := &realNode{t: t, bin: cairndPath(t), dir: t.TempDir()}
	n.client, n.peer, n.admin = freePort(t), freePort(t), freePort(t)
	n.start()
	t.Cleanup(func() { n.stop(syscall.SIGKILL) })
	return n
}

func (n *realNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.client) }

func (n *realNode) start() {
	n.log = &bytes.Buffer{}
	n.cmd = exec.Command(n.bin, "--node-name", "solo", "--cluster-name", "gotest",
		"--listen-address", "127.0.0.1", "--client-port", fmt.Sprint(n.client),
		"--peer-port", fmt.Sprint(n.peer), "--admin-port", fmt.Sprint(n.admin),
		"--data-dir", filepath.Join(n.dir, "data"))
	n.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", n.addr())
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("cairnd did not listen: %s", n.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *realNode) stop(sig syscall.Signal) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(sig)
	n.cmd.Wait()
	n.cmd = nil
}

func TestRealNodeReadsWritesDeletesAtEveryLevel(t *testing.T) {
	n := startNode(t)
	c := newClient(t, Options{ContactPoints: []string{n.addr()}, Cluster: "gotest"})
	for _, cl := range []Consistency{One, Quorum, All} {
		key := []byte("k-" + cl.String())
		w, err := c.Put(key, []byte{0, 'v', 0xff}, &ReqOpts{Consistency: cl})
		if err != nil || w.Timestamp == 0 {
			t.Fatalf("put at %s: %+v %v", cl, w, err)
		}
		r, err := c.Get(key, &ReqOpts{Consistency: cl})
		if err != nil || !r.Found || !bytes.Equal(r.Value, []byte{0, 'v', 0xff}) || r.Timestamp != w.Timestamp {
			t.Fatalf("get at %s: %+v %v", cl, r, err)
		}
		d, err := c.Delete(key, &ReqOpts{Consistency: cl})
		if err != nil || d.Timestamp <= w.Timestamp {
			t.Fatalf("delete at %s: %+v %v", cl, d, err)
		}
		r, err = c.Get(key, &ReqOpts{Consistency: cl})
		if err != nil || r.Found || r.Timestamp != d.Timestamp {
			t.Fatalf("get after delete at %s: %+v %v", cl, r, err)
		}
	}
	if _, node := c.Connected(); node != "solo" {
		t.Fatalf("connected to %q", node)
	}
	// a value that expires
	if _, err := c.Put([]byte("brief"), []byte("x"), &ReqOpts{TTL: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if r, err := c.Get([]byte("brief"), nil); err != nil || r.Found {
		t.Fatalf("expired value: %+v %v", r, err)
	}
	// the node refuses an empty key before doing anything: a definite failure
	_, err := c.Put([]byte{}, []byte("x"), nil)
	if e := errStatus(t, err); e.Status != StatusInvalid || e.Indeterminate() {
		t.Fatalf("empty key: %v", e)
	}
}

func TestRealNodeLocalGetRingAndInfo(t *testing.T) {
	n := startNode(t)
	c := newClient(t, Options{ContactPoints: []string{n.addr()}, Cluster: "gotest"})
	w, err := c.Put([]byte("k"), []byte("v"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cell, err := c.LocalGet([]byte("k"))
	if err != nil || !cell.Found || cell.Tombstone || string(cell.Value) != "v" || cell.Timestamp != w.Timestamp {
		t.Fatalf("local get: %+v %v", cell, err)
	}
	d, _ := c.Delete([]byte("k"), nil)
	cell, err = c.LocalGet([]byte("k"))
	if err != nil || !cell.Found || !cell.Tombstone || cell.Timestamp != d.Timestamp {
		t.Fatalf("local get of a tombstone: %+v %v", cell, err)
	}
	if cell, err = c.LocalGet([]byte("never")); err != nil || cell.Found {
		t.Fatalf("local get of nothing: %+v %v", cell, err)
	}
	ring, err := c.Ring([]byte("k"))
	if err != nil || len(ring.Nodes) != 1 || len(ring.Replicas) != 1 || ring.Nodes[0].Name != "solo" ||
		ring.Nodes[0].Addr() != n.addr() || !ring.Nodes[0].InRing || ring.KeyToken == 0 {
		t.Fatalf("ring: %+v %v", ring, err)
	}
	info, err := c.Info()
	if err != nil || info["node_name"] != "solo" || info["cluster_name"] != "gotest" || info["hints_pending"] != "0" {
		t.Fatalf("info: %v %v", info, err)
	}
}

func TestRealNodeCausalityToken(t *testing.T) {
	n := startNode(t)
	c := newClient(t, Options{ContactPoints: []string{n.addr()}, Cluster: "gotest"})
	w1, err := c.Put([]byte("k"), []byte("1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxHLC() < w1.Timestamp {
		t.Fatalf("token %d below the write's stamp %d", c.MaxHLC(), w1.Timestamp)
	}
	// a token 200 ms ahead (within max_clock_offset): the next write is
	// stamped after it
	ahead := c.MaxHLC() + uint64(200)<<16
	c.ObserveHLC(ahead)
	w2, err := c.Put([]byte("k"), []byte("2"), nil)
	if err != nil || w2.Timestamp <= ahead {
		t.Fatalf("write after a token from the near future: %+v %v (token %d)", w2, err, ahead)
	}
	// a token an hour ahead is refused
	c.ObserveHLC(c.MaxHLC() + uint64(3600*1000)<<16)
	_, err = c.Put([]byte("k"), []byte("3"), nil)
	if e := errStatus(t, err); e.Status != StatusClockSkew {
		t.Fatalf("token an hour ahead: %v", e)
	}
}

func TestRealNodeKilledThenRestarted(t *testing.T) {
	n := startNode(t)
	c := newClient(t, Options{ContactPoints: []string{n.addr()}, Cluster: "gotest",
		ConnectTimeout: 500 * time.Millisecond})
	if _, err := c.Put([]byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	n.stop(syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	_, err := c.Put([]byte("k"), []byte("w"), nil)
	e := errStatus(t, err)
	if e.Status != StatusConnection || e.Sent || e.Indeterminate() {
		t.Fatalf("write to a dead node: %v (sent %v)", e, e.Sent)
	}
	n.start()
	r, err := c.Get([]byte("k"), nil)
	if err != nil || string(r.Value) != "v" {
		t.Fatalf("after restart: %+v %v", r, err)
	}
	// SIGTERM: the node drains; requests then fail Closed, never hang
	n.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, err := c.Get([]byte("k"), nil)
		if err != nil {
			st := StatusOf(err)
			if st != StatusClosed && st != StatusConnection {
				t.Fatalf("draining node: %v", err)
			}
			if !strings.Contains(err.Error(), "127.0.0.1") {
				t.Fatalf("error does not name the node: %v", err)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("requests kept succeeding after SIGTERM")
}
