package main_test

import (
	"context"
	"fmt"
	"net"
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
)

// hookd's Redis modes other than one server, each run by the fault
// suite's harness against Redis processes of the test's own on loopback:
// 1,000 events at 100/s while the Redis master dies halfway by SIGKILL.
// Every committed event must still reach every endpoint.

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
	c.await(recv, time.Duration(float64(events)/rate*float64(time.Second))+90*time.Second)
	c.finish()
}
