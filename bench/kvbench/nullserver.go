package main

// nullServer speaks Cairn's client protocol (docs/protocol.md) on loopback
// TCP and answers every request at once, doing nothing: HELLO with
// HELLO_OK, GET with OK and a value of the configured size, PUT, DELETE
// and PING with OK, INFO with an empty INFO_REPLY. Run in the generator's
// own process, it measures what the generator, the Go client and one TCP
// round trip cost: the ceiling of a run on this machine.
//
// It decodes only the frame header (type and request id); replies are
// buffered and flushed when no further request is already waiting, so
// pipelined requests are answered in batches, as cairnd does.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

const (
	nsHello     = 1
	nsHelloOK   = 2
	nsGet       = 10
	nsPut       = 11
	nsDelete    = 12
	nsInfo      = 20
	nsPing      = 23
	nsReply     = 100
	nsInfoReply = 101
	nsMaxFrame  = 32 << 20
	nsHLC       = 1 << 20
)

type nullServer struct {
	ln    net.Listener
	value []byte
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startNullServer listens on addr ("127.0.0.1:0" for any free port).
func startNullServer(addr string, valueSize int) (*nullServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &nullServer{ln: ln, value: make([]byte, valueSize), conns: map[net.Conn]struct{}{}}
	for i := range s.value {
		s.value[i] = 'v'
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *nullServer) Addr() string { return s.ln.Addr().String() }

func (s *nullServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *nullServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// ---- a little msgpack, only what the null server needs ---------------------

func mpArray(b []byte, n int) []byte {
	if n < 16 {
		return append(b, 0x90|byte(n))
	}
	return append(b, 0xdc, byte(n>>8), byte(n))
}

func mpUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v < 1<<8:
		return append(b, 0xcc, byte(v))
	case v < 1<<16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v < 1<<32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func mpStr(b []byte, s string) []byte {
	if len(s) < 32 {
		b = append(b, 0xa0|byte(len(s)))
	} else {
		b = append(b, 0xd9, byte(len(s)))
	}
	return append(b, s...)
}

func mpBin(b []byte, v []byte) []byte {
	switch {
	case len(v) < 1<<8:
		b = append(b, 0xc4, byte(len(v)))
	case len(v) < 1<<16:
		b = append(b, 0xc5, byte(len(v)>>8), byte(len(v)))
	default:
		b = append(b, 0xc6, byte(len(v)>>24), byte(len(v)>>16), byte(len(v)>>8), byte(len(v)))
	}
	return append(b, v...)
}

// mpReadUint decodes an unsigned integer at b[0:].
func mpReadUint(b []byte) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, errors.New("truncated")
	}
	t := b[0]
	if t < 0x80 {
		return uint64(t), 1, nil
	}
	var n int
	switch t {
	case 0xcc:
		n = 1
	case 0xcd:
		n = 2
	case 0xce:
		n = 4
	case 0xcf:
		n = 8
	default:
		return 0, 0, fmt.Errorf("not an unsigned integer (0x%02x)", t)
	}
	if len(b) < 1+n {
		return 0, 0, errors.New("truncated")
	}
	var v uint64
	for _, x := range b[1 : 1+n] {
		v = v<<8 | uint64(x)
	}
	return v, 1 + n, nil
}

// frameHead returns a frame body's type and request id.
func frameHead(body []byte) (typ, id uint64, err error) {
	if len(body) == 0 {
		return 0, 0, errors.New("empty frame")
	}
	p := 0
	switch t := body[0]; {
	case t&0xf0 == 0x90:
		p = 1
	case t == 0xdc:
		p = 3
	case t == 0xdd:
		p = 5
	default:
		return 0, 0, errors.New("frame body is not an array")
	}
	if p > len(body) {
		return 0, 0, errors.New("truncated")
	}
	typ, n, err := mpReadUint(body[p:])
	if err != nil {
		return 0, 0, err
	}
	id, _, err = mpReadUint(body[p+n:])
	return typ, id, err
}

// beginFrame reserves the length prefix; endFrame fills it in.
func beginFrame(b []byte) ([]byte, int) { return append(b, 0, 0, 0, 0), len(b) }

func endFrame(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

func (s *nullServer) reply(out []byte, id uint64, status uint64, value []byte, msg string) []byte {
	out, at := beginFrame(out)
	out = mpArray(out, 7)
	out = mpUint(out, nsReply)
	out = mpUint(out, id)
	out = mpUint(out, status)
	out = mpUint(out, nsHLC)
	out = mpUint(out, nsHLC)
	if value != nil {
		out = mpBin(out, value)
	} else {
		out = append(out, 0xc0)
	}
	if msg != "" {
		out = mpStr(out, msg)
	} else {
		out = append(out, 0xc0)
	}
	return endFrame(out, at)
}

func (s *nullServer) serve(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	var hdr [4]byte
	var body, out []byte
	hello := false
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > nsMaxFrame {
			return
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		typ, id, err := frameHead(body)
		if err != nil {
			return
		}
		out = out[:0]
		switch {
		case !hello && typ != nsHello:
			w.Write(s.reply(out, 0, 9, nil, "HELLO first"))
			w.Flush()
			return
		case typ == nsHello:
			hello = true
			var at int
			out, at = beginFrame(out)
			out = mpArray(out, 7)
			out = mpUint(out, nsHelloOK)
			out = mpUint(out, id)
			out = mpUint(out, 1)
			out = mpStr(out, "cairn")
			out = mpStr(out, "null")
			out = mpStr(out, "00000000000000000000000000000000")
			out = mpUint(out, nsHLC)
			out = endFrame(out, at)
		case typ == nsGet:
			out = s.reply(out, id, 0, s.value, "")
		case typ == nsPut, typ == nsDelete, typ == nsPing:
			out = s.reply(out, id, 0, nil, "")
		case typ == nsInfo:
			var at int
			out, at = beginFrame(out)
			out = mpArray(out, 4)
			out = mpUint(out, nsInfoReply)
			out = mpUint(out, id)
			out = mpUint(out, nsHLC)
			out = append(out, 0x80) // empty map
			out = endFrame(out, at)
		default:
			out = s.reply(out, id, 9, nil, fmt.Sprintf("unknown request type %d", typ))
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}
