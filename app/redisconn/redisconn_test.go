package redisconn_test

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hookd/hookd/app/redisconn"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	ok := []redisconn.Config{
		{URL: redisconn.DefaultURL},
		{SentinelAddrs: []string{"127.0.0.1:26379"}, SentinelMaster: "m", Password: "p", DB: 3, TLS: true},
		{ClusterAddrs: []string{"127.0.0.1:7000"}, Password: "p", TLS: true},
	}
	for _, c := range ok {
		if err := c.Check(false); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if err := (redisconn.Config{ClusterAddrs: []string{"127.0.0.1:7000"}}).Check(true); err == nil {
		t.Error("a URL set with Cluster mode: accepted")
	}
	for _, a := range []string{"127.0.0.1", "127.0.0.1:", ":6379", "127.0.0.1:0", "127.0.0.1:x", "a:1,"} {
		if _, err := redisconn.ParseAddrs(a); err == nil {
			t.Errorf("ParseAddrs(%q) accepted", a)
		}
	}
	if got, err := redisconn.ParseAddrs("a:1, [::1]:2"); err != nil || strings.Join(got, " ") != "a:1 [::1]:2" {
		t.Errorf("ParseAddrs: %v, %v", got, err)
	}
}

// node is a redis-server of the test's own in cluster mode.
type node struct {
	port int
	cmd  *exec.Cmd
}

func (n *node) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

func (n *node) cli(args ...string) string {
	out, _ := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(n.port)}, args...)...).Output()
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCluster runs three masters with a replica each, on loopback.
func startCluster(t *testing.T) []*node {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a Redis Cluster of six redis-server processes")
	}
	var nodes []*node
	args := []string{"--cluster", "create"}
	for range 6 {
		n := &node{port: freePort(t)}
		n.cmd = exec.Command("redis-server", "--port", strconv.Itoa(n.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.TempDir(), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000")
		if err := n.cmd.Start(); err != nil {
			t.Fatalf("start redis-server (deploy/services.sh installs it): %v", err)
		}
		t.Cleanup(func() {
			if n.cmd.ProcessState == nil {
				_ = n.cmd.Process.Signal(syscall.SIGTERM)
				_ = n.cmd.Wait()
			}
		})
		for deadline := time.Now().Add(10 * time.Second); n.cli("PING") != "PONG"; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("redis-server on %d did not answer", n.port)
			}
		}
		nodes = append(nodes, n)
		args = append(args, n.addr())
	}
	if out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Ready when every node sees every slot served and every replica has
	// synced with its master: one that never did is not promoted.
	for _, n := range nodes {
		for deadline := time.Now().Add(30 * time.Second); !clusterReady(n.cli("CLUSTER", "INFO"), n.cli("ROLE")); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s never saw the cluster ok: %s", n.addr(), n.cli("ROLE"))
			}
		}
	}
	return nodes
}

// clusterReady tells from a node's CLUSTER INFO and ROLE that it sees the
// cluster ok and, if it is a replica, that it has synced with its master.
func clusterReady(info, role string) bool {
	f := strings.Fields(role)
	return strings.Contains(info, "cluster_state:ok") && (f[0] == "master" || len(f) == 5 && f[3] == "connected" && f[4] != "-1")
}

// TestClusterFollowsFailover kills the master of a key's slot: a Cluster
// client works again as soon as the master's replica has taken the slot
// over, not when its slot map is next due for a reload.
func TestClusterFollowsFailover(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t)
	var addrs []string
	for _, n := range nodes[:3] {
		addrs = append(addrs, n.addr())
	}
	rdb, err := redisconn.Config{ClusterAddrs: addrs}.Open(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cc := rdb.(*redis.ClusterClient)
	const key = "hookd:{failover}:k"
	// The victim is the master that takes the key (the others answer
	// MOVED).
	var victim *node
	for _, n := range nodes {
		if victim == nil && strings.HasPrefix(n.cli("ROLE"), "master") && n.cli("SET", key, "1") == "OK" {
			victim = n
		}
	}
	if victim == nil {
		t.Fatal("no master takes the key")
	}
	// The client's map is fresh: its next periodic reload is far off.
	cc.ReloadState(t.Context())
	time.Sleep(500 * time.Millisecond)
	if err := cc.Set(t.Context(), key, "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Process.Kill()
	_ = victim.cmd.Wait()
	killed := time.Now()
	// The replica takes over once the other masters agree the master
	// failed (node timeout 1s).
	var promoted time.Time
	for promoted.IsZero() {
		if time.Since(killed) > 30*time.Second {
			t.Fatal("no replica took the slot over")
		}
		for _, n := range nodes {
			if n != victim && strings.HasPrefix(n.cli("ROLE"), "master") && n.cli("SET", key, "3") == "OK" {
				promoted = time.Now()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The client follows within a couple of seconds of the promotion
	// (without reloading on failures it would wait for its periodic
	// reload, 10s after the one above).
	var lastErr error
	for {
		if lastErr = cc.Set(t.Context(), key, "4", 0).Err(); lastErr == nil {
			break
		}
		if time.Since(promoted) > 5*time.Second {
			t.Fatalf("the client still fails %s after the promotion (%.1fs after the kill): %v", time.Since(promoted).Round(time.Millisecond), time.Since(killed).Seconds(), lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("replica promoted %.1fs after the kill; the client followed %.2fs later", promoted.Sub(killed).Seconds(), time.Since(promoted).Seconds())
}
