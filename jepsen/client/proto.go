package client

// Cairn's client protocol (docs/protocol.md): frames are a 4-byte
// big-endian body length and a msgpack array [type, request_id, arg...].

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ProtoVersion is the protocol version sent in HELLO.
const ProtoVersion = 1

// MaxFrame is the largest body this client accepts (the node's default
// max_frame_bytes).
const MaxFrame = 32 << 20

// Message types.
const (
	msgHello      = 1
	msgHelloOK    = 2
	msgGet        = 10
	msgPut        = 11
	msgDelete     = 12
	msgInfo       = 20
	msgRing       = 21
	msgLocalGet   = 22
	msgAdmin      = 30
	msgReply      = 100
	msgInfoReply  = 101
	msgRingReply  = 102
	msgLocalReply = 103
)

// Consistency is a request's consistency level.
type Consistency uint8

const (
	One    Consistency = 1
	Quorum Consistency = 2
	All    Consistency = 3
)

func (c Consistency) String() string {
	switch c {
	case One:
		return "ONE"
	case Quorum:
		return "QUORUM"
	case All:
		return "ALL"
	}
	return fmt.Sprintf("Consistency(%d)", uint8(c))
}

// ParseConsistency reads ONE, QUORUM or ALL (any case).
func ParseConsistency(s string) (Consistency, error) {
	for _, c := range []Consistency{One, Quorum, All} {
		if equalFold(s, c.String()) {
			return c, nil
		}
	}
	return 0, fmt.Errorf("bad consistency level %q (ONE, QUORUM or ALL)", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Status is a status code as the node sends it (common/kv.h), extended
// with two the client produces itself.
type Status uint32

const (
	StatusOK          Status = 0
	StatusNotFound    Status = 1
	StatusAgain       Status = 2
	StatusBusy        Status = 3
	StatusNoMem       Status = 4
	StatusIO          Status = 5
	StatusCorrupt     Status = 6
	StatusTimeout     Status = 7
	StatusUnavailable Status = 8
	StatusProto       Status = 9
	StatusInvalid     Status = 10
	StatusNoSpace     Status = 11
	StatusSuperseded  Status = 12
	StatusClockSkew   Status = 13
	StatusClosed      Status = 14
	StatusExists      Status = 15
	StatusDenied      Status = 16
	statusCount       Status = 17

	// StatusConnection: no node could be reached, or the connection was
	// lost before the reply.
	StatusConnection Status = 1000
	// StatusNoReply: the node did not answer within the request's timeout
	// (plus a grace period for its own Timeout answer).
	StatusNoReply Status = 1001
)

var statusNames = map[Status]string{
	StatusOK: "OK", StatusNotFound: "NotFound", StatusAgain: "Again",
	StatusBusy: "Overloaded", StatusNoMem: "NoMem", StatusIO: "IO",
	StatusCorrupt: "Corrupt", StatusTimeout: "Timeout",
	StatusUnavailable: "Unavailable", StatusProto: "ProtocolError",
	StatusInvalid: "Invalid", StatusNoSpace: "NoSpace",
	StatusSuperseded: "Superseded", StatusClockSkew: "ClockSkew",
	StatusClosed: "Closed", StatusExists: "Exists", StatusDenied: "Denied",
	StatusConnection: "ConnectionError", StatusNoReply: "NoReply",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Status(%d)", uint32(s))
}

// frame is one decoded message.
type frame struct {
	typ  uint64
	id   uint64
	args []any
}

// encodeFrame builds a whole frame: length prefix and body.
func encodeFrame(typ, id uint64, nargs int, args func(b []byte) []byte) []byte {
	b := make([]byte, 4, 64)
	b = appendArrayHeader(b, 2+nargs)
	b = appendUint(b, typ)
	b = appendUint(b, id)
	if args != nil {
		b = args(b)
	}
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	return b
}

// readFrame reads and decodes one frame, refusing a body above max before
// reading it.
func readFrame(r io.Reader, max uint32) (*frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, fmt.Errorf("empty frame")
	}
	if n > max {
		return nil, fmt.Errorf("frame of %d bytes is above the limit of %d", n, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return decodeFrame(body)
}

func decodeFrame(body []byte) (*frame, error) {
	v, err := decodeOne(body)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return nil, fmt.Errorf("frame body is not an array of at least two elements")
	}
	typ, ok1 := arr[0].(uint64)
	id, ok2 := arr[1].(uint64)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("frame type or request id is not an unsigned integer")
	}
	return &frame{typ: typ, id: id, args: arr[2:]}, nil
}

// Typed argument access; errors name the argument.

func (f *frame) u64(i int, name string) (uint64, error) {
	if i >= len(f.args) {
		return 0, fmt.Errorf("message %d: %s missing", f.typ, name)
	}
	v, ok := f.args[i].(uint64)
	if !ok {
		return 0, fmt.Errorf("message %d: %s is %T, not an unsigned integer", f.typ, name, f.args[i])
	}
	return v, nil
}

func (f *frame) boolean(i int, name string) (bool, error) {
	if i >= len(f.args) {
		return false, fmt.Errorf("message %d: %s missing", f.typ, name)
	}
	v, ok := f.args[i].(bool)
	if !ok {
		return false, fmt.Errorf("message %d: %s is %T, not a bool", f.typ, name, f.args[i])
	}
	return v, nil
}

// bytesArg accepts bin or str (as the node's decoder does); nil when
// optional and nil.
func (f *frame) bytesArg(i int, name string, optional bool) ([]byte, bool, error) {
	if i >= len(f.args) {
		return nil, false, fmt.Errorf("message %d: %s missing", f.typ, name)
	}
	switch v := f.args[i].(type) {
	case []byte:
		return v, true, nil
	case string:
		return []byte(v), true, nil
	case nil:
		if optional {
			return nil, false, nil
		}
	}
	return nil, false, fmt.Errorf("message %d: %s is %T, not bytes", f.typ, name, f.args[i])
}

func (f *frame) status(i int) (Status, error) {
	v, err := f.u64(i, "status")
	if err != nil {
		return 0, err
	}
	if v >= uint64(statusCount) {
		return 0, fmt.Errorf("message %d: status %d is out of range", f.typ, v)
	}
	return Status(v), nil
}
