package cluster

// The connectivity probe: the harness re-executes itself as
// `<binary> __probe SRC TARGET` under a node's uid, and the child tries a
// TCP connection to TARGET (from address SRC when not empty). The harness's
// main must call ProbeMain first thing.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

const probeArg = "__probe"

// ProbeMain runs the probe and exits when the process was started as one.
func ProbeMain() {
	if len(os.Args) != 4 || os.Args[1] != probeArg {
		return
	}
	d := net.Dialer{Timeout: 700 * time.Millisecond}
	if os.Args[2] != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(os.Args[2])}
	}
	c, err := d.Dial("tcp", os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	c.Close()
	os.Exit(0)
}

// runProbe: nil when a process of uid reached target (from src).
func runProbe(uid int, src, target string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, probeArg, src, target)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
