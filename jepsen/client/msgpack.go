package client

// A small msgpack codec: exactly what Cairn's client protocol uses.
//
// Encoding appends to a byte slice and always picks the shortest form, as
// msgpack-c does. Decoding turns one msgpack object into Go values: nil,
// bool, uint64 (non-negative integers), int64 (negative ones), float64,
// string (str), []byte (bin, copied), []any (array) and map[string]any
// (map; Cairn's maps have str keys only). Every length is checked against
// the bytes that remain before anything is allocated, nesting is limited
// to maxDepth, and extension types are refused, as the node refuses them.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

const maxDepth = 16

var errShort = errors.New("msgpack: truncated")

func appendNil(b []byte) []byte { return append(b, 0xc0) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(b, uint64(v))
	}
	switch {
	case v >= -32:
		return append(b, byte(int8(v)))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(int8(v)))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(int16(v)))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(int32(v)))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
	}
}

func appendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendBin(b []byte, v []byte) []byte {
	n := len(v)
	switch {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, v...)
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

// decoder reads msgpack objects from buf.
type decoder struct {
	buf []byte
	off int
}

func (d *decoder) need(n int) error {
	if n < 0 || len(d.buf)-d.off < n {
		return errShort
	}
	return nil
}

func (d *decoder) byte1() (byte, error) {
	if err := d.need(1); err != nil {
		return 0, err
	}
	c := d.buf[d.off]
	d.off++
	return c, nil
}

func (d *decoder) uintN(n int) (uint64, error) {
	if err := d.need(n); err != nil {
		return 0, err
	}
	var v uint64
	for i := 0; i < n; i++ {
		v = v<<8 | uint64(d.buf[d.off+i])
	}
	d.off += n
	return v, nil
}

func (d *decoder) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(d.buf)-d.off) {
		return nil, errShort
	}
	out := make([]byte, n)
	copy(out, d.buf[d.off:d.off+int(n)])
	d.off += int(n)
	return out, nil
}

// value decodes the next object.
func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("msgpack: nested deeper than %d", maxDepth)
	}
	c, err := d.byte1()
	if err != nil {
		return nil, err
	}
	switch {
	case c <= 0x7f:
		return uint64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c&0xe0 == 0xa0:
		b, err := d.bytes(uint64(c & 0x1f))
		return string(b), err
	case c&0xf0 == 0x90:
		return d.array(uint64(c&0x0f), depth)
	case c&0xf0 == 0x80:
		return d.mapping(uint64(c&0x0f), depth)
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		return d.uintN(1 << (c - 0xcc))
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (c - 0xd0)
		u, err := d.uintN(n)
		if err != nil {
			return nil, err
		}
		shift := uint(64 - 8*n)
		v := int64(u<<shift) >> shift
		if v >= 0 {
			return uint64(v), nil
		}
		return v, nil
	case 0xca:
		u, err := d.uintN(4)
		return float64(math.Float32frombits(uint32(u))), err
	case 0xcb:
		u, err := d.uintN(8)
		return math.Float64frombits(u), err
	case 0xc4, 0xc5, 0xc6:
		n, err := d.uintN(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		return d.bytes(n)
	case 0xd9, 0xda, 0xdb:
		n, err := d.uintN(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		b, err := d.bytes(n)
		return string(b), err
	case 0xdc, 0xdd:
		n, err := d.uintN(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.array(n, depth)
	case 0xde, 0xdf:
		n, err := d.uintN(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapping(n, depth)
	}
	return nil, fmt.Errorf("msgpack: type 0x%02x is not allowed", c)
}

func (d *decoder) array(n uint64, depth int) (any, error) {
	// every element takes at least one byte
	if n > uint64(len(d.buf)-d.off) {
		return nil, errShort
	}
	out := make([]any, n)
	for i := range out {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (d *decoder) mapping(n uint64, depth int) (any, error) {
	if n > uint64(len(d.buf)-d.off)/2 {
		return nil, errShort
	}
	out := make(map[string]any, n)
	for i := uint64(0); i < n; i++ {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("msgpack: map key of type %T", k)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out[ks] = v
	}
	return out, nil
}

// decodeOne decodes buf as exactly one msgpack object.
func decodeOne(buf []byte) (any, error) {
	d := decoder{buf: buf}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.off != len(buf) {
		return nil, fmt.Errorf("msgpack: %d bytes after the object", len(buf)-d.off)
	}
	return v, nil
}
