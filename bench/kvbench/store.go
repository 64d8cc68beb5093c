package main

// The stores the generator drives. Each goroutine w uses connection
// w mod C, so C clients are shared round-robin by the goroutines.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cairn/jepsen/client"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Store is one system under test.
type Store interface {
	// Read returns whether the key was found.
	Read(w int, key []byte) (bool, error)
	Write(w int, key, value []byte) error
	// Ping sends a null request.
	Ping(w int) error
	// PingVia names what Ping sends ("PING", "INFO", or "" if the store
	// has none).
	PingVia() string
	Close()
}

// Error kinds, as reported.
const (
	errTimeout     = "timeout"
	errUnavailable = "unavailable"
	errOverloaded  = "overloaded"
	errConnection  = "connection"
	errOther       = "other"
)

// ---- Cairn ------------------------------------------------------------------

type cairnStore struct {
	clients  []*client.Client
	read     client.ReqOpts
	write    client.ReqOpts
	pingInfo bool // PING is unknown to the node: use INFO
}

func newCairnStore(hosts []string, conns int, readCL, writeCL client.Consistency, timeout time.Duration) (*cairnStore, error) {
	s := &cairnStore{read: client.ReqOpts{Consistency: readCL, Timeout: timeout},
		write: client.ReqOpts{Consistency: writeCL, Timeout: timeout}}
	for i := 0; i < conns; i++ {
		// Client i starts at host i mod H (then the others, for failover),
		// so connections spread over the nodes.
		pts := make([]string, 0, len(hosts))
		for j := range hosts {
			pts = append(pts, hosts[(i+j)%len(hosts)])
		}
		c, err := client.New(client.Options{ContactPoints: pts, ClientName: "cairn-kvbench",
			Consistency: writeCL, Timeout: timeout})
		if err != nil {
			return nil, err
		}
		s.clients = append(s.clients, c)
	}
	// Connect every client now (HELLO), not in the first timed request.
	for _, c := range s.clients {
		if _, err := c.Info(); err != nil {
			s.Close()
			return nil, fmt.Errorf("cannot reach Cairn at %s: %v", strings.Join(hosts, ","), err)
		}
	}
	return s, nil
}

func (s *cairnStore) cl(w int) *client.Client { return s.clients[w%len(s.clients)] }

func (s *cairnStore) Read(w int, key []byte) (bool, error) {
	r, err := s.cl(w).Get(key, &s.read)
	return r.Found, err
}

func (s *cairnStore) Write(w int, key, value []byte) error {
	_, err := s.cl(w).Put(key, value, &s.write)
	return err
}

// probePing decides once, before the run, whether the node knows PING.
func (s *cairnStore) probePing() error {
	err := s.clients[0].Ping()
	if err != nil && client.StatusOf(err) == client.StatusProto &&
		strings.Contains(err.Error(), "unknown request type") {
		s.pingInfo = true
		return nil
	}
	return err
}

func (s *cairnStore) Ping(w int) error {
	if s.pingInfo {
		_, err := s.cl(w).Info()
		return err
	}
	return s.cl(w).Ping()
}

func (s *cairnStore) PingVia() string {
	if s.pingInfo {
		return "INFO"
	}
	return "PING"
}

func (s *cairnStore) Close() {
	for _, c := range s.clients {
		c.Close()
	}
}

func cairnErrKind(err error) string {
	switch client.StatusOf(err) {
	case client.StatusTimeout, client.StatusNoReply:
		return errTimeout
	case client.StatusUnavailable:
		return errUnavailable
	case client.StatusBusy:
		return errOverloaded
	case client.StatusConnection, client.StatusClosed:
		return errConnection
	}
	return errOther
}

// ---- etcd -------------------------------------------------------------------

type etcdStore struct {
	clients      []*clientv3.Client
	serializable bool
	timeout      time.Duration
}

func newEtcdStore(hosts []string, conns int, serializable bool, timeout time.Duration) (*etcdStore, error) {
	s := &etcdStore{serializable: serializable, timeout: timeout}
	for i := 0; i < conns; i++ {
		eps := make([]string, 0, len(hosts))
		for j := range hosts {
			h := hosts[(i+j)%len(hosts)]
			if !strings.Contains(h, "://") {
				h = "http://" + h
			}
			eps = append(eps, h)
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second,
			Logger: quietZap()})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("etcd client: %v", err)
		}
		s.clients = append(s.clients, c)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Get(ctx, "kvbench-hello")
		cancel()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("cannot reach etcd at %s: %v", strings.Join(hosts, ","), err)
		}
	}
	return s, nil
}

func (s *etcdStore) Read(w int, key []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	var r *clientv3.GetResponse
	var err error
	if s.serializable {
		r, err = s.clients[w%len(s.clients)].Get(ctx, string(key), clientv3.WithSerializable())
	} else {
		r, err = s.clients[w%len(s.clients)].Get(ctx, string(key))
	}
	if err != nil {
		return false, err
	}
	return len(r.Kvs) > 0, nil
}

func (s *etcdStore) Write(w int, key, value []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_, err := s.clients[w%len(s.clients)].Put(ctx, string(key), string(value))
	return err
}

func (s *etcdStore) Ping(int) error  { return errors.New("etcd: no null request") }
func (s *etcdStore) PingVia() string { return "" }

func (s *etcdStore) Close() {
	for _, c := range s.clients {
		c.Close()
	}
}

func etcdErrKind(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) {
		return errTimeout
	}
	if errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrNotCapable) {
		return errUnavailable
	}
	if errors.Is(err, rpctypes.ErrTooManyRequests) {
		return errOverloaded
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.DeadlineExceeded:
			return errTimeout
		case codes.Unavailable:
			return errUnavailable
		case codes.ResourceExhausted:
			return errOverloaded
		}
	}
	return errOther
}
