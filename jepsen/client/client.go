// Package client is a Go driver for Cairn's client protocol
// (docs/protocol.md): one pipelined connection at a time to one node of the
// cluster, a consistency level per request, deadlines, the hybrid-logical-
// clock causality token, and failover across contact points.
//
// Outcomes. A request either succeeds (a read that finds nothing succeeds
// with Found false) or returns an *Error. Error.Indeterminate says whether
// a write that failed may still have been applied -- Jepsen's "info": the
// node's Timeout, a connection lost after the request was written, no reply
// at all, a clock-skew refusal after stamping. Only answers that prove
// nothing was done (Unavailable, Overloaded, Closed, Invalid, Denied, a
// protocol error about the request itself) or a request that never left
// the client are definite failures. The client never resends a request.
//
// Failover. The client talks to one node at a time. When it cannot connect,
// when the connection drops, when the node says it is draining (Closed),
// or when a request gets no reply at all within its timeout plus a grace
// period (a hung or unreachable node), it abandons that connection and the
// next request goes to the next contact point, round robin. Requests in
// flight on an abandoned connection fail with StatusConnection.
//
// Causality. The client remembers the largest HLC stamp it has seen in any
// answer and sends it with every GET, PUT and DELETE, so after moving to
// another node it still sees its own writes in order.
//
// A Client is safe for concurrent use; requests from several goroutines are
// pipelined on the one connection.
package client

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPort is the node's default client port.
const DefaultPort = 7070

// Options configure a Client. Zero fields take the defaults.
type Options struct {
	// ContactPoints are "host" or "host:port" (port 7070 by default),
	// tried in order.
	ContactPoints []string
	Cluster       string        // default "cairn"
	ClientName    string        // default "cairn-go"
	Consistency   Consistency   // default Quorum
	Timeout       time.Duration // per request, sent to the node; default 2s
	// ConnectTimeout bounds a TCP connect plus the HELLO handshake with one
	// node; default 2s.
	ConnectTimeout time.Duration
	// NoReplyGrace is how long past Timeout the client waits for the node's
	// own Timeout answer before it gives up on the node; default 250ms.
	NoReplyGrace time.Duration
}

// ReqOpts override the client's defaults for one request; zero fields mean
// the default.
type ReqOpts struct {
	Consistency Consistency
	Timeout     time.Duration
	TTL         time.Duration // puts: expire after this; 0 never
}

// Error is a failed request.
type Error struct {
	Status  Status
	Message string
	Node    string // the address it happened at ("" when none was reached)
	// Sent: the request was written, at least in part, to a node.
	Sent bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Status.String())
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Node != "" {
		b.WriteString(" (")
		b.WriteString(e.Node)
		b.WriteString(")")
	}
	return b.String()
}

// Indeterminate reports whether a write that failed this way may have been
// applied, now or later.
func (e *Error) Indeterminate() bool {
	if !e.Sent {
		return false
	}
	switch e.Status {
	case StatusUnavailable, StatusBusy, StatusClosed, StatusInvalid, StatusDenied, StatusProto:
		// The node refused the request before doing anything with it.
		return false
	}
	return true
}

// StatusOf returns err's Status (StatusOK for nil, StatusConnection for an
// error that is not an *Error).
func StatusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return StatusConnection
}

// Result of a GET, PUT or DELETE.
type Result struct {
	Found     bool   // GET: a live value was found
	Value     []byte // GET: the value
	Timestamp uint64 // the HLC stamp of the cell read or written (0 if none)
	Node      string // the node that coordinated it (its address)
}

// Cell is what one node stores itself for a key (LocalGet).
type Cell struct {
	Found     bool // the node stores a cell: a value or a tombstone
	Tombstone bool
	Value     []byte
	Timestamp uint64
	ExpireMs  uint64
}

// Equal reports whether two cells are the same version.
func (c Cell) Equal(o Cell) bool {
	return c.Found == o.Found && c.Tombstone == o.Tombstone && c.Timestamp == o.Timestamp &&
		c.ExpireMs == o.ExpireMs && string(c.Value) == string(o.Value)
}

func (c Cell) String() string {
	switch {
	case !c.Found:
		return "nothing"
	case c.Tombstone:
		return fmt.Sprintf("tombstone@%d", c.Timestamp)
	}
	return fmt.Sprintf("%q@%d", c.Value, c.Timestamp)
}

// Client is a connection to a Cairn cluster.
type Client struct {
	opts   Options
	points []string

	mu     sync.Mutex
	cn     *conn
	next   int // the contact point to try first on the next connect
	closed bool

	maxHLC atomic.Uint64
	nextID atomic.Uint64
}

// New makes a client; it connects lazily, on the first request.
func New(o Options) (*Client, error) {
	if len(o.ContactPoints) == 0 {
		return nil, errors.New("no contact points")
	}
	if o.Cluster == "" {
		o.Cluster = "cairn"
	}
	if o.ClientName == "" {
		o.ClientName = "cairn-go"
	}
	if o.Consistency == 0 {
		o.Consistency = Quorum
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 2 * time.Second
	}
	if o.NoReplyGrace <= 0 {
		o.NoReplyGrace = 250 * time.Millisecond
	}
	c := &Client{opts: o}
	for _, p := range o.ContactPoints {
		hp, err := normalizePoint(p)
		if err != nil {
			return nil, err
		}
		c.points = append(c.points, hp)
	}
	c.nextID.Store(1)
	return c, nil
}

func normalizePoint(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty contact point")
	}
	if host, port, err := net.SplitHostPort(p); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", fmt.Errorf("contact point %q: bad port", p)
		}
		return net.JoinHostPort(host, port), nil
	}
	return net.JoinHostPort(strings.Trim(p, "[]"), strconv.Itoa(DefaultPort)), nil
}

// Close drops the connection; requests in flight fail with
// StatusConnection.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	cn := c.cn
	c.cn = nil
	c.mu.Unlock()
	if cn != nil {
		cn.kill(errors.New("client closed"))
	}
}

// MaxHLC is the causality token: the largest HLC stamp seen.
func (c *Client) MaxHLC() uint64 { return c.maxHLC.Load() }

// ObserveHLC raises the causality token to at least ts (for sharing tokens
// between clients).
func (c *Client) ObserveHLC(ts uint64) {
	for {
		cur := c.maxHLC.Load()
		if ts <= cur || c.maxHLC.CompareAndSwap(cur, ts) {
			return
		}
	}
}

// Connected returns the address and node name of the current connection
// ("" when there is none).
func (c *Client) Connected() (addr, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cn == nil || c.cn.isDead() {
		return "", ""
	}
	return c.cn.addr, c.cn.node
}

// ---- requests -------------------------------------------------------------

func (c *Client) reqOpts(o *ReqOpts) (Consistency, time.Duration, time.Duration, error) {
	cl, tmo, ttl := c.opts.Consistency, c.opts.Timeout, time.Duration(0)
	if o != nil {
		if o.Consistency != 0 {
			cl = o.Consistency
		}
		if o.Timeout > 0 {
			tmo = o.Timeout
		}
		ttl = o.TTL
	}
	if cl < One || cl > All {
		return 0, 0, 0, &Error{Status: StatusInvalid, Message: fmt.Sprintf("bad consistency level %d", cl)}
	}
	return cl, tmo, ttl, nil
}

func timeoutMs(d time.Duration) uint64 {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if ms > 0xffffffff {
		ms = 0xffffffff
	}
	return uint64(ms)
}

// Get reads key. A missing key is not an error: Found is false.
func (c *Client) Get(key []byte, o *ReqOpts) (Result, error) {
	cl, tmo, _, err := c.reqOpts(o)
	if err != nil {
		return Result{}, err
	}
	f, addr, err := c.call(tmo, func(id uint64) []byte {
		return encodeFrame(msgGet, id, 4, func(b []byte) []byte {
			b = appendBin(b, key)
			b = appendUint(b, uint64(cl))
			b = appendUint(b, timeoutMs(tmo))
			return appendUint(b, c.maxHLC.Load())
		})
	})
	if err != nil {
		return Result{}, err
	}
	return replyResult(f, addr, true)
}

// Put writes key = value.
func (c *Client) Put(key, value []byte, o *ReqOpts) (Result, error) {
	cl, tmo, ttl, err := c.reqOpts(o)
	if err != nil {
		return Result{}, err
	}
	f, addr, err := c.call(tmo, func(id uint64) []byte {
		return encodeFrame(msgPut, id, 6, func(b []byte) []byte {
			b = appendBin(b, key)
			b = appendBin(b, value)
			b = appendUint(b, uint64(cl))
			b = appendUint(b, timeoutMs(tmo))
			b = appendUint(b, c.maxHLC.Load())
			return appendUint(b, uint64(ttl.Milliseconds()))
		})
	})
	if err != nil {
		return Result{}, err
	}
	return replyResult(f, addr, false)
}

// Delete deletes key (writes a tombstone).
func (c *Client) Delete(key []byte, o *ReqOpts) (Result, error) {
	cl, tmo, _, err := c.reqOpts(o)
	if err != nil {
		return Result{}, err
	}
	f, addr, err := c.call(tmo, func(id uint64) []byte {
		return encodeFrame(msgDelete, id, 4, func(b []byte) []byte {
			b = appendBin(b, key)
			b = appendUint(b, uint64(cl))
			b = appendUint(b, timeoutMs(tmo))
			return appendUint(b, c.maxHLC.Load())
		})
	})
	if err != nil {
		return Result{}, err
	}
	return replyResult(f, addr, false)
}

// replyResult turns a REPLY into a Result or an *Error.
func replyResult(f *frame, addr string, isGet bool) (Result, error) {
	r, err := decodeReply(f)
	if err != nil {
		return Result{}, &Error{Status: StatusProto, Message: err.Error(), Node: addr, Sent: true}
	}
	switch r.status {
	case StatusOK:
		res := Result{Timestamp: r.cellTS, Node: addr}
		if isGet {
			if !r.hasValue {
				return Result{}, &Error{Status: StatusProto, Message: "GET answered OK without a value",
					Node: addr, Sent: true}
			}
			res.Found, res.Value = true, r.value
		}
		return res, nil
	case StatusNotFound:
		if isGet {
			return Result{Timestamp: r.cellTS, Node: addr}, nil
		}
	}
	return Result{}, &Error{Status: r.status, Message: r.message, Node: addr, Sent: true}
}

type reply struct {
	status   Status
	hlc      uint64
	cellTS   uint64
	hasValue bool
	value    []byte
	message  string
}

func decodeReply(f *frame) (*reply, error) {
	if f.typ != msgReply {
		return nil, fmt.Errorf("expected REPLY, got message type %d", f.typ)
	}
	var r reply
	var err error
	if r.status, err = f.status(0); err != nil {
		return nil, err
	}
	if r.hlc, err = f.u64(1, "hlc"); err != nil {
		return nil, err
	}
	if r.cellTS, err = f.u64(2, "cell_ts"); err != nil {
		return nil, err
	}
	if r.value, r.hasValue, err = f.bytesArg(3, "value", true); err != nil {
		return nil, err
	}
	msg, _, err := f.bytesArg(4, "message", true)
	if err != nil {
		return nil, err
	}
	r.message = string(msg)
	return &r, nil
}

// Info asks the connected node for its INFO items (numbers as decimal
// strings).
func (c *Client) Info() (map[string]string, error) {
	f, addr, err := c.call(c.opts.Timeout, func(id uint64) []byte {
		return encodeFrame(msgInfo, id, 0, nil)
	})
	if err != nil {
		return nil, err
	}
	if f.typ == msgReply {
		return nil, replyError(f, addr, "INFO")
	}
	if f.typ != msgInfoReply || len(f.args) < 2 {
		return nil, &Error{Status: StatusProto, Message: "malformed INFO_REPLY", Node: addr, Sent: true}
	}
	m, ok := f.args[1].(map[string]any)
	if !ok {
		return nil, &Error{Status: StatusProto, Message: "INFO_REPLY without a map", Node: addr, Sent: true}
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case string:
			out[k] = x
		case uint64:
			out[k] = strconv.FormatUint(x, 10)
		default:
			return nil, &Error{Status: StatusProto, Message: "INFO item " + k + " is neither str nor uint",
				Node: addr, Sent: true}
		}
	}
	return out, nil
}

// msgPing is PING (docs/protocol.md): no arguments, answered at once by a
// REPLY OK without a value, without touching the coordinator or the engine.
const msgPing = 23

// Ping sends a null request to the connected node (connecting first, with
// failover, if there is none) and waits for its answer: the round trip a
// request costs without any work on the node. A node older than PING
// answers ProtocolError "unknown request type 23".
func (c *Client) Ping() error {
	f, addr, err := c.call(c.opts.Timeout, func(id uint64) []byte {
		return encodeFrame(msgPing, id, 0, nil)
	})
	if err != nil {
		return err
	}
	r, derr := decodeReply(f)
	if derr != nil {
		return &Error{Status: StatusProto, Message: derr.Error(), Node: addr, Sent: true}
	}
	if r.status != StatusOK {
		return &Error{Status: r.status, Message: r.message, Node: addr, Sent: true}
	}
	return nil
}

// replyError is the *Error for a plain REPLY to a request whose success
// has another message type.
func replyError(f *frame, addr, what string) error {
	r, err := decodeReply(f)
	if err != nil {
		return &Error{Status: StatusProto, Message: err.Error(), Node: addr, Sent: true}
	}
	if r.status == StatusOK || r.status == StatusNotFound {
		return &Error{Status: StatusProto, Message: fmt.Sprintf("%s answered with a plain REPLY %s",
			what, r.status), Node: addr, Sent: true}
	}
	return &Error{Status: r.status, Message: r.message, Node: addr, Sent: true}
}

// Admin runs a cluster operation on the connected node (ADMIN: "repair",
// "cleanup", "decommission", "removenode" with arg) and returns the node's
// sentence saying what it started.
func (c *Client) Admin(op, arg string) (string, error) {
	f, addr, err := c.call(c.opts.Timeout, func(id uint64) []byte {
		return encodeFrame(msgAdmin, id, 2, func(b []byte) []byte {
			return appendStr(appendStr(b, op), arg)
		})
	})
	if err != nil {
		return "", err
	}
	r, derr := decodeReply(f)
	if derr != nil {
		return "", &Error{Status: StatusProto, Message: derr.Error(), Node: addr, Sent: true}
	}
	if r.status != StatusOK {
		return "", &Error{Status: r.status, Message: r.message, Node: addr, Sent: true}
	}
	return string(r.value), nil
}

// LocalGet asks the connected node for the cell it stores itself for key
// (LOCAL_GET: no coordination, no repair).
func (c *Client) LocalGet(key []byte) (Cell, error) {
	f, addr, err := c.call(c.opts.Timeout, func(id uint64) []byte {
		return encodeFrame(msgLocalGet, id, 1, func(b []byte) []byte { return appendBin(b, key) })
	})
	if err != nil {
		return Cell{}, err
	}
	if f.typ == msgReply {
		return Cell{}, replyError(f, addr, "LOCAL_GET")
	}
	cell, err := decodeLocalReply(f)
	if err != nil {
		return Cell{}, &Error{Status: StatusProto, Message: err.Error(), Node: addr, Sent: true}
	}
	return cell, nil
}

func decodeLocalReply(f *frame) (Cell, error) {
	if f.typ != msgLocalReply {
		return Cell{}, fmt.Errorf("expected LOCAL_REPLY, got message type %d", f.typ)
	}
	st, err := f.status(1)
	if err != nil {
		return Cell{}, err
	}
	var c Cell
	if c.Timestamp, err = f.u64(2, "ts"); err != nil {
		return Cell{}, err
	}
	if c.Tombstone, err = f.boolean(3, "tombstone"); err != nil {
		return Cell{}, err
	}
	if c.ExpireMs, err = f.u64(4, "expire_ms"); err != nil {
		return Cell{}, err
	}
	val, has, err := f.bytesArg(5, "value", true)
	if err != nil {
		return Cell{}, err
	}
	switch st {
	case StatusNotFound:
		if c.Timestamp != 0 || c.Tombstone || c.ExpireMs != 0 || has {
			return Cell{}, errors.New("LOCAL_REPLY NOTFOUND with a cell's fields")
		}
		return Cell{}, nil
	case StatusOK:
		if c.Tombstone == has {
			return Cell{}, errors.New("LOCAL_REPLY: a tombstone carries no value, a value cell one")
		}
		c.Found, c.Value = true, val
		return c, nil
	}
	return Cell{}, fmt.Errorf("LOCAL_REPLY with status %s", st)
}

// RingNode is one member as the answering node sees it.
type RingNode struct {
	Name, NodeID, Host, Rack string
	ClientPort, AdminPort    uint16
	Up                       bool
	LoadBytes                uint64
	OwnershipPPM             uint64
	EffectivePPM             uint64
	Tokens                   []uint64
	Status                   uint64 // 0 joining, 1 normal, 2 leaving, 3 left
	Liveness                 uint64 // 0 alive, 1 suspect, 2 dead
	PhiMilli                 uint64
	Generation               uint64
	InRing                   bool
}

// Addr is the node's client address.
func (n RingNode) Addr() string {
	return net.JoinHostPort(n.Host, strconv.Itoa(int(n.ClientPort)))
}

// Ring is a RING_REPLY.
type Ring struct {
	ReplicationFactor uint64
	Self              int
	KeyToken          uint64
	Nodes             []RingNode
	Replicas          []int // with a key: indices into Nodes, primary first
}

// Ring asks the connected node for its view of the cluster; with key
// non-nil also the key's token and replicas.
func (c *Client) Ring(key []byte) (*Ring, error) {
	f, addr, err := c.call(c.opts.Timeout, func(id uint64) []byte {
		return encodeFrame(msgRing, id, 1, func(b []byte) []byte {
			if key == nil {
				return appendNil(b)
			}
			return appendBin(b, key)
		})
	})
	if err != nil {
		return nil, err
	}
	if f.typ == msgReply {
		return nil, replyError(f, addr, "RING")
	}
	r, err := decodeRing(f)
	if err != nil {
		return nil, &Error{Status: StatusProto, Message: err.Error(), Node: addr, Sent: true}
	}
	return r, nil
}

func decodeRing(f *frame) (*Ring, error) {
	if f.typ != msgRingReply {
		return nil, fmt.Errorf("expected RING_REPLY, got message type %d", f.typ)
	}
	var r Ring
	var err error
	if r.ReplicationFactor, err = f.u64(1, "replication_factor"); err != nil {
		return nil, err
	}
	self, err := f.u64(2, "self")
	if err != nil {
		return nil, err
	}
	if r.KeyToken, err = f.u64(3, "key_token"); err != nil {
		return nil, err
	}
	if len(f.args) < 6 {
		return nil, errors.New("RING_REPLY: too few arguments")
	}
	nodes, ok1 := f.args[4].([]any)
	reps, ok2 := f.args[5].([]any)
	if !ok1 || !ok2 {
		return nil, errors.New("RING_REPLY: nodes or replicas not an array")
	}
	for i, nv := range nodes {
		a, ok := nv.([]any)
		if !ok || len(a) < 11 {
			return nil, fmt.Errorf("RING_REPLY: node %d malformed", i)
		}
		nf := &frame{typ: msgRingReply, args: a}
		var n RingNode
		var b []byte
		str := func(j int, name string) string {
			if err != nil {
				return ""
			}
			b, _, err = nf.bytesArg(j, name, false)
			return string(b)
		}
		u := func(j int, name string) uint64 {
			if err != nil {
				return 0
			}
			var v uint64
			v, err = nf.u64(j, name)
			return v
		}
		n.Name, n.NodeID, n.Host = str(0, "name"), str(1, "node_id"), str(2, "host")
		n.ClientPort, n.AdminPort = uint16(u(3, "client_port")), uint16(u(4, "admin_port"))
		n.Rack = str(5, "rack")
		if err == nil {
			n.Up, err = nf.boolean(6, "up")
		}
		n.LoadBytes, n.OwnershipPPM, n.EffectivePPM = u(7, "load"), u(8, "ownership"), u(9, "effective")
		if err != nil {
			return nil, err
		}
		toks, ok := a[10].([]any)
		if !ok {
			return nil, fmt.Errorf("RING_REPLY: node %d tokens not an array", i)
		}
		for _, t := range toks {
			tv, ok := t.(uint64)
			if !ok {
				return nil, fmt.Errorf("RING_REPLY: node %d token not a uint", i)
			}
			n.Tokens = append(n.Tokens, tv)
		}
		n.Status, n.InRing = 1, true
		if n.Up {
			n.Liveness = 0
		} else {
			n.Liveness = 2
		}
		if len(a) > 11 {
			n.Status = u(11, "status")
		}
		if len(a) > 12 {
			n.Liveness = u(12, "liveness")
		}
		if len(a) > 13 {
			n.PhiMilli = u(13, "phi_milli")
		}
		if len(a) > 14 {
			n.Generation = u(14, "generation")
		}
		if len(a) > 15 && err == nil {
			n.InRing, err = nf.boolean(15, "in_ring")
		}
		if err != nil {
			return nil, err
		}
		r.Nodes = append(r.Nodes, n)
	}
	if len(r.Nodes) == 0 && self != 0 || len(r.Nodes) > 0 && self >= uint64(len(r.Nodes)) {
		return nil, errors.New("RING_REPLY: self out of range")
	}
	r.Self = int(self)
	for _, x := range reps {
		v, ok := x.(uint64)
		if !ok || v >= uint64(len(r.Nodes)) {
			return nil, errors.New("RING_REPLY: replica index out of range")
		}
		r.Replicas = append(r.Replicas, int(v))
	}
	return &r, nil
}

// ---- the connection ---------------------------------------------------------

type conn struct {
	c    *Client
	nc   net.Conn
	addr string
	node string

	wmu      sync.Mutex // guards wbuf, spare, flushing
	wbuf     []byte     // frames queued for the writer
	spare    []byte
	flushing bool // a caller is writing wbuf out

	mu       sync.Mutex
	pending  map[uint64]chan *frame
	err      error
	draining bool
	dead     chan struct{}
}

func (cn *conn) isDead() bool {
	select {
	case <-cn.dead:
		return true
	default:
		return false
	}
}

// kill closes the connection once; pending requests see dead.
func (cn *conn) kill(why error) {
	if why == nil {
		why = errors.New("connection closed")
	}
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = why
	close(cn.dead)
	cn.mu.Unlock()
	cn.nc.Close()
}

func (cn *conn) deadErr() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

func (cn *conn) register(id uint64, ch chan *frame) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err != nil {
		return false
	}
	cn.pending[id] = ch
	return true
}

func (cn *conn) unregister(id uint64) {
	cn.mu.Lock()
	delete(cn.pending, id)
	cn.mu.Unlock()
}

// readLoop delivers frames to their requests until the connection ends.
func (cn *conn) readLoop() {
	for {
		f, err := readFrame(cn.nc, MaxFrame)
		if err != nil {
			cn.kill(fmt.Errorf("connection to %s lost: %v", cn.addr, err))
			return
		}
		cn.c.observe(f)
		if f.typ == msgReply && f.id == 0 {
			// The node reports a broken stream and closes.
			msg := "protocol error"
			if r, err := decodeReply(f); err == nil && r.message != "" {
				msg = r.message
			}
			cn.kill(fmt.Errorf("%s closed the connection: %s", cn.addr, msg))
			return
		}
		if f.typ == msgReply {
			if st, err := f.status(0); err == nil && st == StatusClosed {
				cn.mu.Lock()
				cn.draining = true
				cn.mu.Unlock()
			}
		}
		cn.mu.Lock()
		ch := cn.pending[f.id]
		delete(cn.pending, f.id)
		cn.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
}

// observe raises the causality token from any answer's hlc.
func (c *Client) observe(f *frame) {
	i := -1
	switch f.typ {
	case msgHelloOK:
		i = 4
	case msgReply:
		i = 1
	case msgInfoReply, msgRingReply, msgLocalReply:
		i = 0
	}
	if i >= 0 && i < len(f.args) {
		if v, ok := f.args[i].(uint64); ok {
			c.ObserveHLC(v)
		}
	}
}

// dial connects to one node and runs the handshake.
func (c *Client) dial(addr string) (*conn, error) {
	deadline := time.Now().Add(c.opts.ConnectTimeout)
	nc, err := net.DialTimeout("tcp", addr, c.opts.ConnectTimeout)
	if err != nil {
		return nil, &Error{Status: StatusConnection, Message: err.Error(), Node: addr}
	}
	nc.SetDeadline(deadline)
	hello := encodeFrame(msgHello, 0, 3, func(b []byte) []byte {
		b = appendUint(b, ProtoVersion)
		b = appendStr(b, c.opts.Cluster)
		return appendStr(b, c.opts.ClientName)
	})
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, &Error{Status: StatusConnection, Message: "handshake: " + err.Error(), Node: addr}
	}
	f, err := readFrame(nc, MaxFrame)
	if err != nil {
		nc.Close()
		return nil, &Error{Status: StatusConnection, Message: "handshake: " + err.Error(), Node: addr}
	}
	if f.typ == msgReply {
		nc.Close()
		r, derr := decodeReply(f)
		if derr != nil {
			return nil, &Error{Status: StatusProto, Message: "handshake: " + derr.Error(), Node: addr}
		}
		return nil, &Error{Status: r.status, Message: r.message, Node: addr}
	}
	if f.typ != msgHelloOK {
		nc.Close()
		return nil, &Error{Status: StatusProto, Message: fmt.Sprintf("handshake: message type %d", f.typ),
			Node: addr}
	}
	cluster, _, err1 := f.bytesArg(1, "cluster", false)
	name, _, err2 := f.bytesArg(2, "node_name", false)
	if err1 != nil || err2 != nil || string(cluster) != c.opts.Cluster {
		nc.Close()
		return nil, &Error{Status: StatusProto, Message: "handshake: malformed HELLO_OK or another cluster",
			Node: addr}
	}
	c.observe(f)
	nc.SetDeadline(time.Time{})
	cn := &conn{c: c, nc: nc, addr: addr, node: string(name),
		pending: make(map[uint64]chan *frame), dead: make(chan struct{})}
	go cn.readLoop()
	return cn, nil
}

// connection returns a usable connection, connecting (with failover) when
// there is none.
func (c *Client) connection() (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, &Error{Status: StatusConnection, Message: "client closed"}
	}
	if c.cn != nil {
		c.cn.mu.Lock()
		ok := c.cn.err == nil && !c.cn.draining
		c.cn.mu.Unlock()
		if ok {
			return c.cn, nil
		}
		old := c.cn
		c.cn = nil
		// A draining node finishes what is in flight; close it afterwards.
		go func() {
			for i := 0; i < 100; i++ {
				old.mu.Lock()
				n := len(old.pending)
				old.mu.Unlock()
				if n == 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			old.kill(errors.New("node draining"))
		}()
	}
	var errs []string
	var last error
	for i := 0; i < len(c.points); i++ {
		idx := (c.next + i) % len(c.points)
		cn, err := c.dial(c.points[idx])
		if err == nil {
			c.cn = cn
			c.next = (idx + 1) % len(c.points)
			return cn, nil
		}
		last = err
		errs = append(errs, err.Error())
	}
	c.next = (c.next + 1) % len(c.points)
	if len(c.points) == 1 {
		return nil, last
	}
	return nil, &Error{Status: StatusConnection, Message: "no node reachable: " + strings.Join(errs, "; ")}
}

// send queues one request's frame. The first caller that finds no write
// under way becomes the writer: it writes what is queued, and whatever other
// callers queue meanwhile, one system call per batch instead of one per
// request. It returns an error only when its own frame's batch fails (then n
// says whether any of it left); a later batch failing kills the connection,
// and the requests in it see a connection error that may have been sent.
func (cn *conn) send(buf []byte, timeout time.Duration) (int, error) {
	cn.wmu.Lock()
	cn.wbuf = append(cn.wbuf, buf...)
	if cn.flushing {
		cn.wmu.Unlock()
		return len(buf), nil
	}
	// No writer: the queue was empty before this frame, which is first.
	cn.flushing = true
	first := true
	for len(cn.wbuf) > 0 {
		out := cn.wbuf
		cn.wbuf = cn.spare[:0]
		cn.wmu.Unlock()
		cn.nc.SetWriteDeadline(time.Now().Add(timeout))
		n, err := cn.nc.Write(out)
		cn.wmu.Lock()
		cn.spare = out[:0]
		if err != nil {
			cn.flushing = false
			cn.wbuf = cn.wbuf[:0]
			cn.wmu.Unlock()
			if first {
				return n, err
			}
			cn.kill(fmt.Errorf("write to %s failed: %v", cn.addr, err))
			return len(buf), nil
		}
		first = false
	}
	cn.flushing = false
	cn.wmu.Unlock()
	return len(buf), nil
}

// abandon drops cn as the current connection (the next request reconnects
// to the next contact point).
func (c *Client) abandon(cn *conn, why error) {
	c.mu.Lock()
	if c.cn == cn {
		c.cn = nil
	}
	c.mu.Unlock()
	cn.kill(why)
}

// call sends one request and waits for its answer. build encodes the frame
// for a request id; it runs after the connection is chosen, so the
// causality token it reads is current.
func (c *Client) call(timeout time.Duration, build func(id uint64) []byte) (*frame, string, error) {
	var cn *conn
	var err error
	var id uint64
	ch := make(chan *frame, 1)
	for attempt := 0; ; attempt++ {
		if cn, err = c.connection(); err != nil {
			return nil, "", err
		}
		id = c.nextID.Add(1)
		if cn.register(id, ch) {
			break
		}
		if attempt > len(c.points) {
			return nil, cn.addr, &Error{Status: StatusConnection, Message: "connections keep failing", Node: cn.addr}
		}
	}
	buf := build(id)
	n, werr := cn.send(buf, timeout)
	if werr != nil {
		cn.unregister(id)
		c.abandon(cn, fmt.Errorf("write to %s failed: %v", cn.addr, werr))
		return nil, cn.addr, &Error{Status: StatusConnection, Message: "write failed: " + werr.Error(),
			Node: cn.addr, Sent: n > 0}
	}
	timer := time.NewTimer(timeout + c.opts.NoReplyGrace)
	defer timer.Stop()
	select {
	case f := <-ch:
		return f, cn.addr, nil
	case <-cn.dead:
		// The reader may have delivered the answer just before the end.
		select {
		case f := <-ch:
			return f, cn.addr, nil
		default:
		}
		cn.unregister(id)
		c.abandon(cn, nil)
		return nil, cn.addr, &Error{Status: StatusConnection, Message: cn.deadErr().Error(),
			Node: cn.addr, Sent: true}
	case <-timer.C:
		cn.unregister(id)
		select {
		case f := <-ch:
			return f, cn.addr, nil
		default:
		}
		c.abandon(cn, fmt.Errorf("%s did not answer within %v", cn.addr, timeout+c.opts.NoReplyGrace))
		return nil, cn.addr, &Error{Status: StatusNoReply,
			Message: fmt.Sprintf("no reply within %v", timeout+c.opts.NoReplyGrace), Node: cn.addr, Sent: true}
	}
}
