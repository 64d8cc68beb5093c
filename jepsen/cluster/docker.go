package cluster

// Docker runs the test against the docker-compose deployment (deploy/,
// issue 8): one container per node, reached by the harness at the
// container's address on the compose network.
//
//	start      docker compose up -d --force-recreate --renew-anon-volumes
//	kill -9    docker compose kill -s SIGKILL SERVICE; restart: start SERVICE
//	pause      docker compose pause / unpause SERVICE (the cgroup freezer)
//	partition  DROP rules between container addresses in a chain of our own
//	           jumped to from DOCKER-USER (traffic between containers on a
//	           bridge crosses FORWARD when br_netfilter is on), so nothing
//	           is needed inside the images
//	teardown   heal, unpause, docker compose down -v
//
// Clock skew is not offered in this mode: the images would need libfaketime
// and a cairnd built without jemalloc. ClockCheck says so.
//
// STATUS: written against docker compose's documented behaviour; it has
// not been run here (this machine has the docker client but no compose
// plugin, and deploy/docker-compose.yml did not exist yet). Use local mode.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"cairn/jepsen/client"
)

// DockerConfig describes a compose deployment.
type DockerConfig struct {
	ComposeFile string
	Project     string
	Dir         string // where container logs are saved at teardown
	ClientPort  int    // default 7070
	AdminPort   int    // default 7072
	Cluster     string // cluster_name in the compose file, default "cairn"
}

// Docker is a compose deployment.
type Docker struct {
	cfg     DockerConfig
	compose []string // "docker compose" or "docker-compose"
	nodes   []Node
	ipt     *iptables

	service map[string]string // node name -> compose service

	mu      sync.Mutex
	stopped map[string]bool
	paused  map[string]bool
}

// NewDocker checks that compose and the file exist; nodes are found at
// Start.
func NewDocker(cfg DockerConfig) (*Docker, error) {
	if cfg.ClientPort == 0 {
		cfg.ClientPort = 7070
	}
	if cfg.AdminPort == 0 {
		cfg.AdminPort = 7072
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "cairn"
	}
	if _, err := os.Stat(cfg.ComposeFile); err != nil {
		return nil, fmt.Errorf("compose file: %v (the docker-compose deployment is issue 8's deploy/docker-compose.yml)", err)
	}
	d := &Docker{cfg: cfg, stopped: map[string]bool{}, paused: map[string]bool{}, service: map[string]string{},
		ipt: &iptables{in: "CAIRN-J-DOCKER", out: "CAIRN-J-DOCKER-OUT"}}
	if exec.Command("docker", "compose", "version").Run() == nil {
		d.compose = []string{"docker", "compose"}
	} else if _, err := exec.LookPath("docker-compose"); err == nil {
		d.compose = []string{"docker-compose"}
	} else {
		return nil, errors.New("neither the docker compose plugin nor docker-compose is installed")
	}
	return d, nil
}

func (d *Docker) run(args ...string) (string, error) {
	full := append(append([]string(nil), d.compose[1:]...), "-p", d.cfg.Project, "-f", d.cfg.ComposeFile)
	full = append(full, args...)
	cmd := exec.Command(d.compose[0], full...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", strings.Join(d.compose, " "), strings.Join(args, " "),
			err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func (d *Docker) Kind() string               { return "docker" }
func (d *Docker) Nodes() []Node              { return d.nodes }
func (d *Docker) ClusterName() string        { return d.cfg.Cluster }
func (d *Docker) LogPath(name string) string { return "" }

func (d *Docker) container(service string) (string, error) {
	out, err := d.run("ps", "-q", service)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	if id == "" {
		return "", fmt.Errorf("no container for %s", service)
	}
	return strings.Fields(id)[0], nil
}

func (d *Docker) Start() error {
	if _, err := d.run("up", "-d", "--force-recreate", "--renew-anon-volumes"); err != nil {
		return err
	}
	out, err := d.run("config", "--services")
	if err != nil {
		return err
	}
	services := strings.Fields(out)
	sort.Strings(services)
	d.nodes = nil
	for _, s := range services {
		id, err := d.container(s)
		if err != nil {
			return err
		}
		ipOut, err := exec.Command("docker", "inspect", "-f",
			"{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id).Output()
		if err != nil {
			return fmt.Errorf("docker inspect %s: %v", s, err)
		}
		ips := strings.Fields(string(ipOut))
		if len(ips) == 0 {
			return fmt.Errorf("%s has no address", s)
		}
		n := Node{Name: s, Host: ips[0],
			ClientAddr: net.JoinHostPort(ips[0], fmt.Sprint(d.cfg.ClientPort)),
			AdminAddr:  net.JoinHostPort(ips[0], fmt.Sprint(d.cfg.AdminPort))}
		// the node's own name (RING and gossip use it), when it answers
		n.Name = d.nodeName(n.ClientAddr, s)
		d.service[n.Name] = s
		d.nodes = append(d.nodes, n)
	}
	return nil
}

// nodeName asks a node for its node_name (INFO), for up to 30 s; the
// service name if it never answers.
func (d *Docker) nodeName(addr, service string) string {
	cl, err := client.New(client.Options{ContactPoints: []string{addr}, Cluster: d.cfg.Cluster,
		Timeout: time.Second, ConnectTimeout: time.Second, ClientName: "jepsen-docker"})
	if err != nil {
		return service
	}
	defer cl.Close()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if info, err := cl.Info(); err == nil && info["node_name"] != "" {
			return info["node_name"]
		}
	}
	return service
}

// svc is the compose service of a node.
func (d *Docker) svc(name string) string {
	if s, ok := d.service[name]; ok {
		return s
	}
	return name
}

func (d *Docker) Stop() error {
	_, err := d.run("stop", "-t", "25")
	return err
}

func (d *Docker) Teardown() error {
	var errs []string
	if err := d.Heal(); err != nil {
		errs = append(errs, err.Error())
	}
	d.ResumeAll()
	if d.cfg.Dir != "" {
		if out, err := d.run("logs", "--no-color", "-t"); err == nil {
			os.MkdirAll(d.cfg.Dir, 0o755)
			os.WriteFile(d.cfg.Dir+"/compose.log", []byte(out), 0o644)
		}
	}
	if _, err := d.run("down", "-v", "-t", "10"); err != nil {
		errs = append(errs, err.Error())
	}
	if err := d.ipt.teardownDocker(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func (d *Docker) StartNode(name string) error {
	_, err := d.run("start", d.svc(name))
	if err == nil {
		d.mu.Lock()
		delete(d.stopped, name)
		d.mu.Unlock()
	}
	return err
}

func (d *Docker) Kill(name string) error {
	_, err := d.run("kill", "-s", "SIGKILL", d.svc(name))
	if err == nil {
		d.mu.Lock()
		d.stopped[name] = true
		d.mu.Unlock()
	}
	return err
}

func (d *Docker) Running(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.stopped[name]
}

func (d *Docker) Pause(name string) error {
	_, err := d.run("pause", d.svc(name))
	if err == nil {
		d.mu.Lock()
		d.paused[name] = true
		d.mu.Unlock()
	}
	return err
}

func (d *Docker) Resume(name string) error {
	d.mu.Lock()
	was := d.paused[name]
	delete(d.paused, name)
	d.mu.Unlock()
	if !was {
		return nil
	}
	_, err := d.run("unpause", d.svc(name))
	return err
}

func (d *Docker) ResumeAll() error {
	var first error
	for _, n := range d.nodes {
		if err := d.Resume(n.Name); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (d *Docker) Partition(g Grudge) error {
	if err := d.ipt.setupDocker(); err != nil {
		return err
	}
	var rules []iptRule
	for a, froms := range g {
		na, err := Find(d, a)
		if err != nil {
			return err
		}
		for _, b := range froms {
			nb, err := Find(d, b)
			if err != nil {
				return err
			}
			rules = append(rules, iptRule{srcHost: nb.Host, dstHost: na.Host})
		}
	}
	return d.ipt.replaceDocker(rules)
}

func (d *Docker) Heal() error {
	if ipt("-n", "-L", d.ipt.in) != nil {
		return nil
	}
	return d.ipt.replaceDocker(nil)
}

func (d *Docker) PartitionCheck() error {
	b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return errors.New("bridge traffic does not cross iptables (net.bridge.bridge-nf-call-iptables is not 1)")
	}
	return d.ipt.setupDocker()
}

func (d *Docker) SetClock(name string, offset time.Duration) error {
	return errors.New("clock skew is not supported in docker mode")
}

func (d *Docker) ResetClocks() error { return nil }

func (d *Docker) ClockCheck() error {
	return errors.New("docker mode cannot skew clocks (the images carry no libfaketime); use local mode")
}

// ---- DOCKER-USER rules ------------------------------------------------------

func (t *iptables) setupDocker() error {
	if ipt("-n", "-L", t.in) != nil {
		if err := ipt("-N", t.in); err != nil {
			return err
		}
	}
	if ipt("-C", "DOCKER-USER", "-j", t.in) != nil {
		return ipt("-I", "DOCKER-USER", "1", "-j", t.in)
	}
	return nil
}

func (t *iptables) replaceDocker(rules []iptRule) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n-F %s\n", t.in)
	for _, r := range rules {
		fmt.Fprintf(&b, "-A %s -s %s/32 -d %s/32 -j DROP\n", t.in, r.srcHost, r.dstHost)
	}
	b.WriteString("COMMIT\n")
	cmd := exec.Command("iptables-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func (t *iptables) teardownDocker() error {
	if ipt("-n", "-L", t.in) != nil {
		return nil
	}
	ipt("-F", t.in)
	for i := 0; i < 10 && ipt("-C", "DOCKER-USER", "-j", t.in) == nil; i++ {
		ipt("-D", "DOCKER-USER", "-j", t.in)
	}
	return ipt("-X", t.in)
}
