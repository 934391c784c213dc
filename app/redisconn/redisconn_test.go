package redisconn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// writeTLSFiles writes a CA, and a server certificate for 127.0.0.1 it
// signed, to dir: ca.pem, server.pem, server.key.
func writeTLSFiles(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem": {Type: "CERTIFICATE", Bytes: leafDER},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClusterTLS runs a Redis Cluster that speaks only TLS, with a CA of
// the test's own: HOOKD_REDIS_TLS=true reaches it, the CA trusted the way
// an operator makes Go trust one (SSL_CERT_FILE), and without TLS nothing
// does. The client runs in a child process of the test binary, since Go
// reads SSL_CERT_FILE once per process.
func TestClusterTLS(t *testing.T) {
	if addrs := os.Getenv("HOOKD_TEST_TLS_CLUSTER"); addrs != "" {
		clusterTLSClient(t, strings.Split(addrs, ","))
		return
	}
	if testing.Short() {
		t.Skip("runs a Redis Cluster of three redis-server processes")
	}
	t.Parallel()
	dir := t.TempDir()
	writeTLSFiles(t, dir)
	tlsArgs := []string{"--tls-cert-file", filepath.Join(dir, "server.pem"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no"}
	var addrs []string
	for range 3 {
		port := freePort(t)
		cmd := exec.Command("redis-server", append([]string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--tls-cluster", "yes"}, tlsArgs...)...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		})
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	cli := func(args ...string) (string, error) {
		out, err := exec.Command("redis-cli", append([]string{"--tls", "--cacert", filepath.Join(dir, "ca.pem")}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if out, _ := cli("-h", host, "-p", port, "PING"); out == "PONG" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("TLS redis-server on %s did not answer", a)
			}
		}
	}
	if out, err := cli(append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, _ := cli("-h", host, "-p", port, "CLUSTER", "INFO"); strings.Contains(out, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the TLS cluster never became ok")
		}
	}
	child := exec.Command(os.Args[0], "-test.run=^TestClusterTLS$", "-test.v")
	child.Env = append(os.Environ(), "HOOKD_TEST_TLS_CLUSTER="+strings.Join(addrs, ","), "SSL_CERT_FILE="+filepath.Join(dir, "ca.pem"))
	out, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	t.Logf("client: %s", out)
}

// clusterTLSClient is TestClusterTLS' client side, in the child process.
func clusterTLSClient(t *testing.T, addrs []string) {
	ctx := t.Context()
	plain, err := redisconn.Config{ClusterAddrs: addrs}.Open(ctx, 2)
	if err == nil {
		_ = plain.Close()
		t.Fatal("a client without TLS reached the TLS cluster")
	}
	rdb, err := redisconn.Config{ClusterAddrs: addrs, TLS: true}.Open(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	// Keys on every master: each node's certificate is checked.
	for i := range 30 {
		k := fmt.Sprintf("hookd:{tls-%d}:k", i)
		if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s over TLS: %v", k, err)
		}
	}
}
