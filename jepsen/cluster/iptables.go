package cluster

// Our iptables chains: <name>-IN, jumped to from INPUT (address rules), and
// <name>-OUT, jumped to from OUTPUT (owner rules: the owner match is only
// valid there). A set of cuts is installed with one iptables-restore
// --noflush transaction, so a partition changes at once and atomically.

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

type iptables struct {
	in, out string
}

type iptRule struct {
	srcHost string // the node whose packets are dropped
	srcUID  int
	dstHost string // the node that does not hear them
}

func newIptables(subnet string) *iptables {
	base := "CAIRN-J-" + strings.ReplaceAll(subnet, ".", "-")
	if len(base) > 24 {
		base = base[:24]
	}
	return &iptables{in: base + "-IN", out: base + "-OUT"}
}

func ipt(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// setup creates the chains (empty) and the jumps to them.
func (t *iptables) setup() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return fmt.Errorf("iptables is not installed (Debian package iptables)")
	}
	for _, c := range []struct{ chain, from string }{{t.in, "INPUT"}, {t.out, "OUTPUT"}} {
		if ipt("-n", "-L", c.chain) != nil {
			if err := ipt("-N", c.chain); err != nil {
				return err
			}
		}
		if err := ipt("-F", c.chain); err != nil {
			return err
		}
		if ipt("-C", c.from, "-j", c.chain) != nil {
			if err := ipt("-I", c.from, "1", "-j", c.chain); err != nil {
				return err
			}
		}
	}
	// the owner match must be available, or uid cuts silently do nothing
	if err := ipt("-A", t.out, "-m", "owner", "--uid-owner", "0", "-d", "127.255.255.254", "-j", "DROP"); err != nil {
		return fmt.Errorf("the iptables owner match is unavailable: %v", err)
	}
	return ipt("-F", t.out)
}

// replace swaps the current cuts for rules, atomically.
func (t *iptables) replace(rules []iptRule) error {
	var b strings.Builder
	b.WriteString("*filter\n")
	fmt.Fprintf(&b, "-F %s\n-F %s\n", t.in, t.out)
	var lines []string
	for _, r := range rules {
		lines = append(lines,
			fmt.Sprintf("-A %s -s %s/32 -d %s/32 -j DROP", t.in, r.srcHost, r.dstHost),
			fmt.Sprintf("-A %s -d %s/32 -m owner --uid-owner %d -j DROP", t.out, r.dstHost, r.srcUID))
	}
	sort.Strings(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("COMMIT\n")
	cmd := exec.Command("iptables-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables-restore: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// teardown flushes and removes the chains and the jumps; errors only when
// something was there and could not be removed.
func (t *iptables) teardown() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	var errs []string
	for _, c := range []struct{ chain, from string }{{t.in, "INPUT"}, {t.out, "OUTPUT"}} {
		if ipt("-n", "-L", c.chain) != nil {
			continue
		}
		if err := ipt("-F", c.chain); err != nil {
			errs = append(errs, err.Error())
		}
		for i := 0; i < 10 && ipt("-C", c.from, "-j", c.chain) == nil; i++ {
			if err := ipt("-D", c.from, "-j", c.chain); err != nil {
				errs = append(errs, err.Error())
				break
			}
		}
		if err := ipt("-X", c.chain); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// CleanupLocal removes the chains a local cluster on subnet may have left
// behind (after the harness itself was killed -9: its nodes die with it,
// its rules do not).
func CleanupLocal(subnet string) error {
	return newIptables(strings.TrimSuffix(subnet, ".")).teardown()
}
