package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- msgpack ------------------------------------------------------------

func TestMsgpackRoundTripsEveryWidth(t *testing.T) {
	uints := []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	for _, u := range uints {
		v, err := decodeOne(appendUint(nil, u))
		if err != nil || v != u {
			t.Fatalf("uint %d: %v %v", u, v, err)
		}
	}
	ints := []int64{-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	for _, i := range ints {
		v, err := decodeOne(appendInt(nil, i))
		if err != nil || v != i {
			t.Fatalf("int %d: %v %v", i, v, err)
		}
	}
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("x", n)
		if v, err := decodeOne(appendStr(nil, s)); err != nil || v != s {
			t.Fatalf("str %d: %v", n, err)
		}
		b := bytes.Repeat([]byte{0, 0xff}, n/2)
		v, err := decodeOne(appendBin(nil, b))
		if err != nil || !bytes.Equal(v.([]byte), b) {
			t.Fatalf("bin %d: %v", n, err)
		}
	}
	for _, n := range []int{0, 15, 16, 65535, 65536} {
		b := appendArrayHeader(nil, n)
		for i := 0; i < n; i++ {
			b = appendNil(b)
		}
		v, err := decodeOne(b)
		if err != nil || len(v.([]any)) != n {
			t.Fatalf("array %d: %v", n, err)
		}
	}
	m := appendMapHeader(nil, 2)
	m = appendBool(appendStr(m, "a"), true)
	m = appendUint(appendStr(m, "b"), 7)
	v, err := decodeOne(m)
	if err != nil || v.(map[string]any)["a"] != true || v.(map[string]any)["b"] != uint64(7) {
		t.Fatalf("map: %v %v", v, err)
	}
}

func TestMsgpackRefusesMalformedInput(t *testing.T) {
	deep := []byte{}
	for i := 0; i < 20; i++ {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0xc0)
	cases := map[string][]byte{
		"empty":            {},
		"truncated uint":   {0xcf, 1, 2},
		"truncated str":    {0xa5, 'a'},
		"huge bin length":  {0xc6, 0xff, 0xff, 0xff, 0xff},
		"huge array count": {0xdd, 0xff, 0xff, 0xff, 0xff},
		"huge map count":   {0xdf, 0x7f, 0xff, 0xff, 0xff},
		"extension":        {0xd4, 1, 2},
		"int map key":      {0x81, 0x01, 0x02},
		"trailing bytes":   {0xc0, 0xc0},
		"too deep":         deep,
	}
	for name, b := range cases {
		if _, err := decodeOne(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// ---- a fake node ----------------------------------------------------------

type fakeReq struct {
	typ  uint64
	id   uint64
	args []any
}

// fakeNode speaks the protocol on 127.0.0.1:0 and answers each request
// with handle(req) (nil: no answer).
type fakeNode struct {
	t       *testing.T
	ln      net.Listener
	cluster string
	name    string
	hlc     uint64
	handle  func(r fakeReq) []byte

	mu        sync.Mutex
	conns     []net.Conn
	requests  []fakeReq
	accepted  int
	closeNext bool // close the connection instead of answering once
}

func newFake(t *testing.T, name string, handle func(r fakeReq) []byte) *fakeNode {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{t: t, ln: ln, cluster: "cairn", name: name, hlc: 1000, handle: handle}
	go f.serve()
	t.Cleanup(f.stop)
	return f
}

func (f *fakeNode) addr() string { return f.ln.Addr().String() }

func (f *fakeNode) stop() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}

func (f *fakeNode) dropAll() {
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
}

func (f *fakeNode) setHandle(h func(r fakeReq) []byte) {
	f.mu.Lock()
	f.handle = h
	f.mu.Unlock()
}

func (f *fakeNode) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

func (f *fakeNode) reqs() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.requests...)
}

func (f *fakeNode) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.accepted++
		f.mu.Unlock()
		go f.conn(c)
	}
}

func (f *fakeNode) conn(c net.Conn) {
	defer c.Close()
	fr, err := readFrame(c, MaxFrame)
	if err != nil || fr.typ != msgHello {
		return
	}
	cl, _, _ := fr.bytesArg(1, "cluster", false)
	if string(cl) != f.cluster {
		c.Write(replyFrame(fr.id, StatusInvalid, 0, 0, nil, "cluster name mismatch"))
		return
	}
	c.Write(encodeFrame(msgHelloOK, fr.id, 5, func(b []byte) []byte {
		b = appendUint(b, ProtoVersion)
		b = appendStr(b, f.cluster)
		b = appendStr(b, f.name)
		b = appendStr(b, "0123456789abcdef0123456789abcdef")
		return appendUint(b, f.hlc)
	}))
	var wmu sync.Mutex
	for {
		fr, err := readFrame(c, MaxFrame)
		if err != nil {
			return
		}
		r := fakeReq{typ: fr.typ, id: fr.id, args: fr.args}
		f.mu.Lock()
		f.requests = append(f.requests, r)
		closeNow := f.closeNext
		f.closeNext = false
		f.mu.Unlock()
		if closeNow {
			return
		}
		f.mu.Lock()
		handle := f.handle
		f.mu.Unlock()
		go func() { // answers may come in any order
			if out := handle(r); out != nil {
				wmu.Lock()
				c.Write(out)
				wmu.Unlock()
			}
		}()
	}
}

func replyFrame(id uint64, st Status, hlc, ts uint64, value []byte, msg string) []byte {
	return encodeFrame(msgReply, id, 5, func(b []byte) []byte {
		b = appendUint(b, uint64(st))
		b = appendUint(b, hlc)
		b = appendUint(b, ts)
		if value == nil {
			b = appendNil(b)
		} else {
			b = appendBin(b, value)
		}
		if msg == "" {
			return appendNil(b)
		}
		return appendStr(b, msg)
	})
}

// kvHandler is an in-memory store: PUT stores, GET reads, DELETE removes.
func kvHandler(hlc uint64) func(r fakeReq) []byte {
	var mu sync.Mutex
	data := map[string][]byte{}
	ts := hlc
	return func(r fakeReq) []byte {
		mu.Lock()
		defer mu.Unlock()
		ts++
		key, _ := r.args[0].([]byte)
		switch r.typ {
		case msgPut:
			data[string(key)] = r.args[1].([]byte)
			return replyFrame(r.id, StatusOK, ts, ts, nil, "")
		case msgGet:
			v, ok := data[string(key)]
			if !ok {
				return replyFrame(r.id, StatusNotFound, ts, 0, nil, "")
			}
			return replyFrame(r.id, StatusOK, ts, 7, v, "")
		case msgDelete:
			delete(data, string(key))
			return replyFrame(r.id, StatusOK, ts, ts, nil, "")
		}
		return replyFrame(r.id, StatusProto, ts, 0, nil, "unknown request")
	}
}

func newClient(t *testing.T, o Options) *Client {
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func errStatus(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *Error", err)
	}
	return e
}

// ---- tests ----------------------------------------------------------------

func TestClientPutGetDeleteAndWireArguments(t *testing.T) {
	f := newFake(t, "n1", kvHandler(5000))
	c := newClient(t, Options{ContactPoints: []string{f.addr()}, Timeout: 700 * time.Millisecond})
	if _, err := c.Put([]byte("k\x00"), []byte{0, 1, 2}, &ReqOpts{Consistency: One, TTL: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get([]byte("k\x00"), nil)
	if err != nil || !r.Found || !bytes.Equal(r.Value, []byte{0, 1, 2}) || r.Timestamp != 7 {
		t.Fatalf("get: %+v %v", r, err)
	}
	if _, err := c.Delete([]byte("k\x00"), &ReqOpts{Consistency: All}); err != nil {
		t.Fatal(err)
	}
	r, err = c.Get([]byte("k\x00"), nil)
	if err != nil || r.Found {
		t.Fatalf("get after delete: %+v %v", r, err)
	}
	reqs := f.reqs()
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	put := reqs[0]
	if put.typ != msgPut || put.args[2] != uint64(One) || put.args[3] != uint64(700) || put.args[5] != uint64(3000) {
		t.Fatalf("put args %v", put.args)
	}
	if put.args[4] != uint64(1000) { // causality: the HELLO_OK hlc
		t.Fatalf("put causality %v", put.args[4])
	}
	if reqs[1].args[1] != uint64(Quorum) || reqs[2].args[1] != uint64(All) {
		t.Fatalf("levels %v %v", reqs[1].args, reqs[2].args)
	}
	// every later request carries the largest hlc seen so far
	if reqs[3].args[3] != uint64(5003) {
		t.Fatalf("causality after three replies: %v", reqs[3].args[3])
	}
	if addr, node := c.Connected(); addr != f.addr() || node != "n1" {
		t.Fatalf("connected to %s %s", addr, node)
	}
}

func TestClientMatchesOutOfOrderRepliesByID(t *testing.T) {
	var mu sync.Mutex
	var held []fakeReq
	release := make(chan struct{})
	f := newFake(t, "n1", func(r fakeReq) []byte {
		mu.Lock()
		held = append(held, r)
		n := len(held)
		mu.Unlock()
		if n == 10 {
			close(release)
		}
		<-release
		key := r.args[0].([]byte)
		// answer later requests first: sleep less for larger keys
		time.Sleep(time.Duration(10-int(key[0]-'0')) * 5 * time.Millisecond)
		return replyFrame(r.id, StatusOK, 1, 1, key, "")
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k := []byte{byte('0' + i)}
			r, err := c.Get(k, nil)
			if err != nil || !bytes.Equal(r.Value, k) {
				errs <- errors.New("wrong answer")
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if f.connections() != 1 {
		t.Fatalf("%d connections for pipelined requests", f.accepted)
	}
}

// Many goroutines share one connection: their frames are batched into
// common writes, and every one must reach the node whole, once, with its
// own key and value.
func TestClientConcurrentWritesArriveWholeAndOnce(t *testing.T) {
	f := newFake(t, "n1", kvHandler(1))
	c := newClient(t, Options{ContactPoints: []string{f.addr()}})
	const G, N = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, G)
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < N; i++ {
				k := []byte(fmt.Sprintf("g%d-k%d", g, i))
				v := bytes.Repeat([]byte{byte('a' + g%26)}, 1+(g*N+i)%300)
				if _, err := c.Put(k, v, nil); err != nil {
					errs <- err
					return
				}
				r, err := c.Get(k, nil)
				if err != nil || !bytes.Equal(r.Value, v) {
					errs <- fmt.Errorf("%s: got %q, %v", k, r.Value, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if f.connections() != 1 {
		t.Fatalf("%d connections", f.connections())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[uint64]bool{}
	for _, r := range f.requests {
		if seen[r.id] {
			t.Fatalf("request %d arrived twice", r.id)
		}
		seen[r.id] = true
	}
	if len(f.requests) != 2*G*N {
		t.Fatalf("%d requests arrived, want %d", len(f.requests), 2*G*N)
	}
}

func TestClientOutcomesAreDefiniteOrIndeterminate(t *testing.T) {
	statuses := map[string]Status{"unavailable": StatusUnavailable, "timeout": StatusTimeout,
		"busy": StatusBusy, "skew": StatusClockSkew, "invalid": StatusInvalid, "io": StatusIO}
	f := newFake(t, "n1", func(r fakeReq) []byte {
		key := string(r.args[0].([]byte))
		return replyFrame(r.id, statuses[key], 1, 0, nil, "because "+key)
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}})
	want := map[string]bool{"unavailable": false, "timeout": true, "busy": false, "skew": true,
		"invalid": false, "io": true}
	for key, indet := range want {
		_, err := c.Put([]byte(key), []byte("v"), nil)
		e := errStatus(t, err)
		if e.Status != statuses[key] || e.Indeterminate() != indet || !strings.Contains(e.Message, key) {
			t.Errorf("%s: %v indeterminate=%v", key, e, e.Indeterminate())
		}
	}
}

func TestClientNoReplyIsIndeterminateAndFailsOver(t *testing.T) {
	silent := newFake(t, "n1", func(r fakeReq) []byte { return nil })
	good := newFake(t, "n2", kvHandler(1))
	c := newClient(t, Options{ContactPoints: []string{silent.addr(), good.addr()},
		Timeout: 100 * time.Millisecond, NoReplyGrace: 50 * time.Millisecond})
	t0 := time.Now()
	_, err := c.Put([]byte("k"), []byte("v"), nil)
	e := errStatus(t, err)
	if e.Status != StatusNoReply || !e.Indeterminate() || e.Node != silent.addr() {
		t.Fatalf("silent node: %v", e)
	}
	if d := time.Since(t0); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	if _, err := c.Put([]byte("k"), []byte("v"), nil); err != nil {
		t.Fatalf("after failover: %v", err)
	}
	if addr, _ := c.Connected(); addr != good.addr() {
		t.Fatalf("connected to %s", addr)
	}
}

func TestClientRefusedConnectionIsDefiniteAndNextPointIsTried(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	c := newClient(t, Options{ContactPoints: []string{dead}, ConnectTimeout: 300 * time.Millisecond})
	_, err := c.Put([]byte("k"), []byte("v"), nil)
	e := errStatus(t, err)
	if e.Status != StatusConnection || e.Sent || e.Indeterminate() {
		t.Fatalf("nothing listening: %v sent=%v", e, e.Sent)
	}
	good := newFake(t, "n2", kvHandler(1))
	c2 := newClient(t, Options{ContactPoints: []string{dead, good.addr()}})
	if _, err := c2.Put([]byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestClientLostConnectionFailsInFlightRequestsAsIndeterminate(t *testing.T) {
	f := newFake(t, "n1", func(r fakeReq) []byte { return nil })
	c := newClient(t, Options{ContactPoints: []string{f.addr()}, Timeout: 5 * time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := c.Put([]byte("k"), []byte("v"), nil)
		done <- err
	}()
	for len(f.reqs()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	f.dropAll()
	select {
	case err := <-done:
		e := errStatus(t, err)
		if e.Status != StatusConnection || !e.Sent || !e.Indeterminate() {
			t.Fatalf("lost connection: %v", e)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("request not failed when the connection dropped")
	}
	// the request is never resent; the next one reconnects
	f.setHandle(kvHandler(1))
	if _, err := c.Put([]byte("k2"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range f.reqs() {
		if string(r.args[0].([]byte)) == "k" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("request sent %d times", n)
	}
}

func TestClientMovesOnWhenNodeDrains(t *testing.T) {
	draining := newFake(t, "n1", func(r fakeReq) []byte {
		return replyFrame(r.id, StatusClosed, 1, 0, nil, "node is draining")
	})
	good := newFake(t, "n2", kvHandler(1))
	c := newClient(t, Options{ContactPoints: []string{draining.addr(), good.addr()}})
	_, err := c.Put([]byte("k"), []byte("v"), nil)
	e := errStatus(t, err)
	if e.Status != StatusClosed || e.Indeterminate() {
		t.Fatalf("draining: %v", e)
	}
	if _, err := c.Put([]byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if _, node := c.Connected(); node != "n2" {
		t.Fatalf("on %s", node)
	}
}

func TestClientWrongClusterIsRefusedAtHandshake(t *testing.T) {
	f := newFake(t, "n1", kvHandler(1))
	c := newClient(t, Options{ContactPoints: []string{f.addr()}, Cluster: "other"})
	_, err := c.Get([]byte("k"), nil)
	e := errStatus(t, err)
	if e.Status != StatusInvalid || e.Sent || !strings.Contains(e.Message, "cluster") {
		t.Fatalf("wrong cluster: %v", e)
	}
}

func TestClientMalformedOrOversizedReplyFailsCleanly(t *testing.T) {
	var mode atomic.Int32
	f := newFake(t, "n1", func(r fakeReq) []byte {
		switch mode.Load() {
		case 0: // a REPLY whose status is out of range
			return replyFrame(r.id, 999, 1, 0, nil, "")
		default: // a frame larger than the limit
			b := make([]byte, 4)
			binary.BigEndian.PutUint32(b, MaxFrame+1)
			return b
		}
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}})
	_, err := c.Get([]byte("k"), nil)
	if e := errStatus(t, err); e.Status != StatusProto {
		t.Fatalf("bad status: %v", e)
	}
	mode.Store(1)
	_, err = c.Get([]byte("k"), nil)
	if e := errStatus(t, err); e.Status != StatusConnection || !e.Sent {
		t.Fatalf("oversized frame: %v", e)
	}
}

func TestClientLocalGetDecodesCells(t *testing.T) {
	cells := map[string]func(b []byte) []byte{
		"value": func(b []byte) []byte {
			b = appendUint(appendUint(appendUint(b, 9), 0), 77)
			return appendBin(appendUint(appendBool(b, false), 1234), []byte("v"))
		},
		"tomb": func(b []byte) []byte {
			b = appendUint(appendUint(appendUint(b, 9), 0), 78)
			return appendNil(appendUint(appendBool(b, true), 0))
		},
		"none": func(b []byte) []byte {
			b = appendUint(appendUint(appendUint(b, 9), 1), 0)
			return appendNil(appendUint(appendBool(b, false), 0))
		},
		"bad": func(b []byte) []byte { // a tombstone with a value
			b = appendUint(appendUint(appendUint(b, 9), 0), 78)
			return appendBin(appendUint(appendBool(b, true), 0), []byte("x"))
		},
	}
	f := newFake(t, "n1", func(r fakeReq) []byte {
		if r.typ != msgLocalGet {
			return replyFrame(r.id, StatusProto, 1, 0, nil, "")
		}
		key := string(r.args[0].([]byte))
		if key == "draining" {
			return replyFrame(r.id, StatusClosed, 1, 0, nil, "node is draining")
		}
		return encodeFrame(msgLocalReply, r.id, 6, cells[key])
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}})
	cell, err := c.LocalGet([]byte("value"))
	if err != nil || !cell.Found || cell.Tombstone || string(cell.Value) != "v" || cell.Timestamp != 77 || cell.ExpireMs != 1234 {
		t.Fatalf("value: %+v %v", cell, err)
	}
	cell, err = c.LocalGet([]byte("tomb"))
	if err != nil || !cell.Found || !cell.Tombstone || cell.Value != nil || cell.Timestamp != 78 {
		t.Fatalf("tombstone: %+v %v", cell, err)
	}
	cell, err = c.LocalGet([]byte("none"))
	if err != nil || cell.Found {
		t.Fatalf("nothing: %+v %v", cell, err)
	}
	if _, err = c.LocalGet([]byte("bad")); errStatus(t, err).Status != StatusProto {
		t.Fatalf("bad cell: %v", err)
	}
	if _, err = c.LocalGet([]byte("draining")); errStatus(t, err).Status != StatusClosed {
		t.Fatalf("draining: %v", err)
	}
	if c.MaxHLC() < 9 {
		t.Fatalf("hlc not observed: %d", c.MaxHLC())
	}
	a := Cell{Found: true, Value: []byte("v"), Timestamp: 1}
	if !a.Equal(Cell{Found: true, Value: []byte("v"), Timestamp: 1}) || a.Equal(Cell{Found: true, Value: []byte("v"), Timestamp: 2}) {
		t.Fatal("Cell.Equal")
	}
}

func TestClientRingDecodesNodesAndReplicas(t *testing.T) {
	f := newFake(t, "n1", func(r fakeReq) []byte {
		return encodeFrame(msgRingReply, r.id, 6, func(b []byte) []byte {
			b = appendUint(b, 50) // hlc
			b = appendUint(b, 3)  // rf
			b = appendUint(b, 1)  // self
			b = appendUint(b, 99) // key token
			b = appendArrayHeader(b, 2)
			for i, name := range []string{"a", "b"} {
				fields := 16
				if i == 1 {
					fields = 11 // an older node's entry
				}
				b = appendArrayHeader(b, fields)
				b = appendStr(b, name)
				b = appendStr(b, "id-"+name)
				b = appendStr(b, "127.0.5."+string(rune('1'+i)))
				b = appendUint(b, 7070)
				b = appendUint(b, 7072)
				b = appendStr(b, "r1")
				b = appendBool(b, i == 0)
				b = appendUint(b, 10)
				b = appendUint(b, 500000)
				b = appendUint(b, 1000000)
				b = appendArrayHeader(b, 2)
				b = appendUint(appendUint(b, 5), 6)
				if fields == 16 {
					b = appendUint(b, 1)
					b = appendUint(b, 1)
					b = appendUint(b, 4200)
					b = appendUint(b, 3)
					b = appendBool(b, true)
				}
			}
			b = appendArrayHeader(b, 2)
			return appendUint(appendUint(b, 1), 0)
		})
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}})
	r, err := c.Ring([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if r.ReplicationFactor != 3 || r.Self != 1 || r.KeyToken != 99 || len(r.Nodes) != 2 ||
		len(r.Replicas) != 2 || r.Replicas[0] != 1 {
		t.Fatalf("ring %+v", r)
	}
	a, b := r.Nodes[0], r.Nodes[1]
	if a.Addr() != "127.0.5.1:7070" || !a.Up || a.Liveness != 1 || a.PhiMilli != 4200 || a.Generation != 3 || len(a.Tokens) != 2 {
		t.Fatalf("node a %+v", a)
	}
	if b.Up || b.Liveness != 2 || b.Status != 1 || !b.InRing {
		t.Fatalf("old node b %+v", b)
	}
	if got := f.reqs()[0].args[0]; !bytes.Equal(got.([]byte), []byte("k")) {
		t.Fatalf("ring key %v", got)
	}
}

func TestClientInfoReturnsItems(t *testing.T) {
	f := newFake(t, "n1", func(r fakeReq) []byte {
		return encodeFrame(msgInfoReply, r.id, 2, func(b []byte) []byte {
			b = appendUint(b, 5)
			b = appendMapHeader(b, 2)
			b = appendStr(appendStr(b, "node_name"), "n1")
			return appendUint(appendStr(b, "hints_pending"), 12)
		})
	})
	c := newClient(t, Options{ContactPoints: []string{f.addr()}})
	m, err := c.Info()
	if err != nil || m["node_name"] != "n1" || m["hints_pending"] != "12" {
		t.Fatalf("info %v %v", m, err)
	}
}

func TestConsistencyNamesParse(t *testing.T) {
	for _, s := range []string{"one", "QUORUM", "All"} {
		if _, err := ParseConsistency(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ParseConsistency("two"); err == nil {
		t.Fatal("two parsed")
	}
	if Quorum.String() != "QUORUM" || StatusUnavailable.String() != "Unavailable" {
		t.Fatal("names")
	}
}
