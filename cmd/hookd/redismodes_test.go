package main_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/hookd/hookd/tasks"
)

// hookd's Redis modes other than one server, each run by the fault
// suite's harness against Redis processes of the test's own on loopback:
// 1,000 events at 100/s while the Redis master dies halfway by SIGKILL.
// Every committed event must still reach every endpoint.

// failoverSettle is how long a failover scenario may take to deliver
// everything after its last event. A task whose completion the dead
// master acknowledged but never replicated stays active on the new master
// until asynq's recoverer takes it back: its lease (30s) expired 30s ago,
// at a pass every minute, so up to two minutes after the failover. (asynq's
// own retries of such a completion run with a context already cancelled.)
func failoverSettle(events int, rate float64) time.Duration {
	return time.Duration(float64(events)/rate*float64(time.Second)) + 150*time.Second
}

// sentinelMaster is the name the test's Sentinels know the master by.
const sentinelMaster = "hookd"

// sentinelRedis is a master, its replica and three Sentinels watching
// them, with a quorum of two: the smallest topology that fails over.
type sentinelRedis struct {
	t               *testing.T
	master, replica *privateRedis
	sentinels       []*exec.Cmd
	sentinelAddrs   []string
}

func startSentinelRedis(t *testing.T) *sentinelRedis {
	t.Helper()
	s := &sentinelRedis{t: t, master: startPrivateRedis(t)}
	s.replica = &privateRedis{port: freePort(t), dir: t.TempDir(), extra: []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.master.port)}}
	if err := s.replica.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.replica.stop)
	for range 3 {
		s.startSentinel()
	}
	// Ready once every Sentinel knows the replica and the two others:
	// only then can they agree on a failover.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, addr := range s.sentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
		for {
			m, err := sc.Master(ctx, sentinelMaster).Result()
			if err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2" {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("sentinel %s never saw the replica and the other sentinels: %v %v", addr, m, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = sc.Close()
	}
	return s
}

// startSentinel runs one Sentinel, which marks the master down after a
// second without answers.
func (s *sentinelRedis) startSentinel() {
	port := freePort(s.t)
	dir := s.t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
		"sentinel monitor %s 127.0.0.1 %d 2\n"+
		"sentinel down-after-milliseconds %[3]s 1000\n"+
		"sentinel failover-timeout %[3]s 10000\n", port, dir, sentinelMaster, s.master.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		s.t.Fatal(err)
	}
	// redis-server runs as a Sentinel with --sentinel: the redis-sentinel
	// program of Debian's package is the same binary.
	cmd := exec.Command("redis-server", conf, "--sentinel")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server --sentinel: %v", err)
	}
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.sentinels = append(s.sentinels, cmd)
	s.sentinelAddrs = append(s.sentinelAddrs, addr)
}

func (s *sentinelRedis) env() []string {
	return []string{"HOOKD_REDIS_SENTINEL_ADDRS=" + strings.Join(s.sentinelAddrs, ","), "HOOKD_REDIS_SENTINEL_MASTER=" + sentinelMaster}
}

func (s *sentinelRedis) connOpt() asynq.RedisConnOpt {
	return asynq.RedisFailoverClientOpt{MasterName: sentinelMaster, SentinelAddrs: s.sentinelAddrs}
}

// masterAddr is the master's address according to the first Sentinel
// that answers.
func (s *sentinelRedis) masterAddr(ctx context.Context) string {
	for _, addr := range s.sentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
		a, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
		_ = sc.Close()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1])
		}
	}
	return ""
}

// killMaster kills the master with SIGKILL and returns, in the
// background, how long the Sentinels took to name the replica master.
func (s *sentinelRedis) killMaster() <-chan time.Duration {
	start := time.Now()
	s.master.kill()
	took := make(chan time.Duration, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for ctx.Err() == nil {
			if s.masterAddr(ctx) == s.replica.addr() {
				took <- time.Since(start)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		took <- -1
	}()
	return took
}

// TestRedisSentinel runs hookd in Sentinel mode, as separate api, relay
// and worker processes, and kills the Redis master halfway through the
// events: the Sentinels promote the replica, hookd follows them, and
// what the master acknowledged but never replicated (fan-outs, delivery
// tasks) the reconciler finds again from Postgres.
func TestRedisSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hookd processes against Postgres and a Redis master, replica and Sentinels")
	}
	bin := build(t)
	events, rate := envInt(t, "HOOKD_CHAOS_EVENTS", 1000), float64(envInt(t, "HOOKD_CHAOS_RATE", 100))
	topo := startSentinelRedis(t)
	recv := newChaosReceiver(t, 0, 0)
	c := startChaos(t, bin, recv, chaosOpts{redis: topo})
	var failover <-chan time.Duration
	c.publish(events, rate, func() { failover = topo.killMaster() })
	took := <-failover
	if took < 0 {
		t.Fatal("the Sentinels never promoted the replica")
	}
	t.Logf("the Sentinels promoted the replica %.1fs after the master died", took.Seconds())
	c.await(recv, failoverSettle(events, rate))
	c.finish()
}

// clusterRedis is a Redis Cluster of the test's own: three masters with a
// replica each, a replica promoted within seconds of its master's death.
type clusterRedis struct {
	t     *testing.T
	nodes []*privateRedis
}

func startClusterRedis(t *testing.T) *clusterRedis {
	t.Helper()
	c := &clusterRedis{t: t}
	args := []string{"--cluster", "create"}
	for range 6 {
		r := &privateRedis{port: freePort(t), dir: t.TempDir(), extra: []string{"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}}
		if err := r.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.stop)
		c.nodes = append(c.nodes, r)
		args = append(args, r.addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.nodes {
		c.waitOK(n)
	}
	return c
}

// waitOK waits until node n sees the cluster's every slot served and, if
// it is a replica, has synced with its master: one that never did is not
// promoted.
func (c *clusterRedis) waitOK(n *privateRedis) {
	c.t.Helper()
	ready := func() bool {
		role := strings.Fields(n.cli("ROLE"))
		return strings.Contains(n.cli("CLUSTER", "INFO"), "cluster_state:ok") &&
			len(role) > 0 && (role[0] == "master" || len(role) == 5 && role[3] == "connected" && role[4] != "-1")
	}
	for deadline := time.Now().Add(30 * time.Second); !ready(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster node %s never saw the cluster ok: %s", n.addr(), n.cli("CLUSTER", "INFO"))
		}
	}
}

func (c *clusterRedis) addrs() []string {
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.addr())
	}
	return addrs
}

func (c *clusterRedis) env() []string {
	return []string{"HOOKD_REDIS_CLUSTER_ADDRS=" + strings.Join(c.addrs(), ",")}
}

func (c *clusterRedis) connOpt() asynq.RedisConnOpt {
	return asynq.RedisClusterClientOpt{Addrs: c.addrs()}
}

// masterOf returns the live master serving key's slot, as the cluster
// says.
func (c *clusterRedis) masterOf(ctx context.Context, key string) *privateRedis {
	c.t.Helper()
	for _, n := range c.nodes {
		if n.cmd.ProcessState != nil {
			continue // dead
		}
		rdb := redis.NewClient(&redis.Options{Addr: n.addr()})
		slot, err1 := rdb.ClusterKeySlot(ctx, key).Result()
		slots, err2 := rdb.ClusterSlots(ctx).Result()
		_ = rdb.Close()
		if err1 != nil || err2 != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				for _, m := range c.nodes {
					if m.addr() == s.Nodes[0].Addr {
						return m
					}
				}
			}
		}
	}
	c.t.Fatalf("no master serves %s", key)
	return nil
}

// masters returns the live masters.
func (c *clusterRedis) masters() []*privateRedis {
	var ms []*privateRedis
	for _, n := range c.nodes {
		if n.cmd.ProcessState == nil && strings.Contains(n.cli("ROLE"), "master") {
			ms = append(ms, n)
		}
	}
	return ms
}

// queueKeys counts the keys of asynq's delivery queues that node n holds.
func queueKeys(n *privateRedis) int {
	out := n.cli("--scan", "--pattern", "asynq:{deliveries*")
	return len(strings.Fields(out))
}

// TestRedisCluster runs hookd against a Redis Cluster with the deliveries
// sharded over six queues, and kills the master holding the fan-out queue
// halfway through the events: its replica takes over, hookd follows the
// new slot map, and what the dead master held the reconciler finds again
// from Postgres. The nodes' own key counts show the delivery queues on
// every master.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hookd processes against Postgres and a Redis Cluster of six nodes")
	}
	bin := build(t)
	events, rate := envInt(t, "HOOKD_CHAOS_EVENTS", 1000), float64(envInt(t, "HOOKD_CHAOS_RATE", 100))
	topo := startClusterRedis(t)
	// A fifth of the requests fail: their retries wait in the delivery
	// queues' shards, where the key counts see them.
	recv := newChaosReceiver(t, 0.2, 0)
	const shards = 6
	queues := tasks.QueueConfig{Shards: shards}.WithDefaults()
	ctx := t.Context()
	c := startChaos(t, bin, recv, chaosOpts{redis: topo, env: []string{"HOOKD_QUEUE_SHARDS=" + strconv.Itoa(shards)},
		endpoints: func(c *chaosRun) {
			// One endpoint per master: endpoints are added until their
			// shards' queues cover every master, and those on a master
			// already covered are dropped again.
			covered := map[string]bool{}
			for i := 0; len(covered) < 3; i++ {
				if i == 30 {
					t.Fatalf("30 endpoints covered only %d masters", len(covered))
				}
				id := c.addEndpoint()
				m := topo.masterOf(ctx, "asynq:{"+queues.DeliveryQueue(queues.Shard(id), false)+"}:pending").addr()
				if covered[m] {
					c.dropEndpoint(len(c.endpoints) - 1)
					continue
				}
				covered[m] = true
			}
		}})
	victim := topo.masterOf(ctx, "asynq:{"+tasks.QueueEvents+"}:pending")
	// The masters' delivery-queue keys, sampled until the kill.
	most := map[string]int{}
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, m := range topo.masters() {
				most[m.addr()] = max(most[m.addr()], queueKeys(m))
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var killedAt time.Time
	c.publish(events, rate, func() {
		close(stopSampling)
		<-sampled
		killedAt = time.Now()
		victim.kill()
	})
	t.Logf("delivery-queue keys per master before the kill (most seen): %v", most)
	if len(most) != 3 {
		t.Errorf("sampled %d masters, want 3", len(most))
	}
	for addr, n := range most {
		if n == 0 {
			t.Errorf("master %s never held a key of the delivery queues", addr)
		}
	}
	// The victim's replica takes its slots over.
	for deadline := time.Now().Add(30 * time.Second); len(topo.masters()) < 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no replica took over the dead master's slots")
		}
	}
	t.Logf("a replica took over %.1fs after the master died", time.Since(killedAt).Seconds())
	c.await(recv, failoverSettle(events, rate))
	// Asynqmon and the queue metrics see the sharded queues through the
	// Cluster too.
	var shardQueues []string
	for _, id := range c.endpointIDs {
		if i := queues.Shard(id); i > 0 {
			shardQueues = append(shardQueues, queues.DeliveryQueue(i, false))
		}
	}
	if len(shardQueues) == 0 {
		t.Fatal("no endpoint in a shard past the first")
	}
	req, _ := http.NewRequest(http.MethodGet, c.base+"/monitoring/api/queues", nil)
	req.SetBasicAuth("admin", chaosKey)
	monitor := fetch(t, req)
	metrics := fetch(t, mustRequest(t, "http://"+c.probes+"/metrics"))
	for _, q := range append(shardQueues, tasks.QueueEvents) {
		if !strings.Contains(monitor, `"queue":"`+q+`"`) {
			t.Errorf("Asynqmon's queues do not list %s: %.500s", q, monitor)
		}
		if !strings.Contains(metrics, `queue="`+q+`"`) {
			t.Errorf("/metrics has no series of queue %s", q)
		}
	}
	c.finish()
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// fetch returns the body of req's 200 answer.
func fetch(t *testing.T, req *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %.300s", req.Method, req.URL, resp.Status, body)
	}
	return string(body)
}
