package main_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/outbox/outboxtest"
)

// The fault suite: the real binary as several processes (1 api, 2 relays
// with the reconciler, 2 workers) against Postgres, a private Redis the
// test starts on its own port, and a receiver that records webhook-ids.
// Events go in at a steady rate while a fault strikes; every committed
// event must then reach every subscribed endpoint at least once.

// chaosEndpoints is how many endpoints every event goes to.
const chaosEndpoints = 3

// privateRedis is a redis-server of the test's own, without persistence.
type privateRedis struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &privateRedis{port: ln.Addr().(*net.TCPAddr).Port, dir: t.TempDir()}
	ln.Close()
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

// start runs redis-server on r's port and waits until it answers.
func (r *privateRedis) start() error {
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--maxmemory-policy", "noeviction")
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server (deploy/services.sh installs it): %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.cli("PING") != "PONG" {
		if time.Now().After(deadline) {
			return fmt.Errorf("private redis on port %d did not answer", r.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (r *privateRedis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *privateRedis) cli(args ...string) string {
	out, _ := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(r.port)}, args...)...).Output()
	return string(bytes.TrimSpace(out))
}

func (r *privateRedis) stop() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		_ = r.cmd.Wait()
	}
}

// chaosReceiver records the webhook-ids each endpoint received; it fails
// a share of the requests, and hangs some past hookd's timeout.
type chaosReceiver struct {
	*httptest.Server
	failShare, hangShare float64
	delay                time.Duration // before each answer

	mu   sync.Mutex
	seen map[string]int // "endpoint webhook-id" -> 2xx answers
}

func newChaosReceiver(t *testing.T, failShare, hangShare float64) *chaosReceiver {
	r := &chaosReceiver{failShare: failShare, hangShare: hangShare, seen: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ep/{ep}", func(w http.ResponseWriter, req *http.Request) {
		time.Sleep(r.delay)
		switch x := rand.Float64(); {
		case x < r.hangShare:
			select { // past hookd's 1s timeout
			case <-req.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		case x < r.hangShare+r.failShare:
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		r.mu.Lock()
		r.seen[req.PathValue("ep")+" "+req.Header.Get("webhook-id")]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	r.Server = httptest.NewServer(mux)
	t.Cleanup(r.Close)
	return r
}

// tally counts the pairs of events and endpoints never received, and the
// deliveries received more than once.
func (r *chaosReceiver) tally(events []string) (lost, dups, unknown int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[string]bool{}
	for _, ev := range events {
		for ep := range chaosEndpoints {
			key := strconv.Itoa(ep) + " " + ev
			want[key] = true
			if r.seen[key] == 0 {
				lost++
			}
		}
	}
	for key, n := range r.seen {
		if !want[key] {
			unknown++
		}
		dups += max(n-1, 0)
	}
	return lost, dups, unknown
}

// chaosRun is one scenario's hookd processes.
type chaosRun struct {
	t       *testing.T
	bin     string
	dbURL   string
	env     []string
	base    string
	redis   *privateRedis
	procs   map[string]*hookdProcess
	client  *http.Client
	appID   string
	events  []string
	eventMu sync.Mutex
}

func startChaos(t *testing.T, bin string, recv *chaosReceiver) *chaosRun {
	t.Helper()
	c := &chaosRun{t: t, bin: bin, redis: startPrivateRedis(t), procs: map[string]*hookdProcess{},
		client: &http.Client{Timeout: 10 * time.Second}}
	c.dbURL = outboxtest.SchemaURL(t)
	c.env = []string{
		"HOOKD_DATABASE_URL=" + c.dbURL,
		"HOOKD_REDIS_URL=" + c.redis.url(),
		"HOOKD_ADMIN_API_KEY=" + chaosKey,
		"HOOKD_ALLOW_PRIVATE_TARGETS=true",
		"HOOKD_METRICS_ADDR=off",
		// Five processes share the test database's connections with the
		// other tests.
		"HOOKD_DATABASE_MAX_CONNS=6",
		"HOOKD_RETRY_SCHEDULE=200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
		"HOOKD_DELIVERY_TIMEOUT=1s",
		"HOOKD_SHUTDOWN_TIMEOUT=2s",
		"HOOKD_CIRCUIT_THRESHOLD=1000",
		"HOOKD_RECONCILE_INTERVAL=1s",
		"HOOKD_RECONCILE_AFTER=3s",
	}
	if out, err := exec.Command(bin, "migrate").CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	for _, name := range []string{"api", "relay1", "relay2", "worker1", "worker2"} {
		c.start(name)
	}
	select {
	case addr := <-c.procs["api"].apiAddr:
		c.base = "http://" + addr
	case <-time.After(30 * time.Second):
		t.Fatal("the api did not listen")
	}
	var app struct{ ID string }
	if err := c.post("/v1/apps", `{"name":"chaos"}`, &app); err != nil {
		t.Fatal(err)
	}
	c.appID = app.ID
	for ep := range chaosEndpoints {
		if err := c.post("/v1/apps/"+c.appID+"/endpoints", fmt.Sprintf(`{"url":"%s/ep/%d","event_types":["order.paid"]}`, recv.URL, ep), nil); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

const chaosKey = "chaos-admin-key"

// start runs process name; its roles follow from the name.
func (c *chaosRun) start(name string) {
	roles := map[string]string{"api": "api", "relay1": "relay,reconciler", "relay2": "relay,reconciler", "worker1": "worker", "worker2": "worker"}[name]
	c.procs[name] = startHookd(c.t, c.bin, name, append(c.env, "HOOKD_ROLES="+roles, "HOOKD_HTTP_ADDR=127.0.0.1:0")...)
}

// kill stops process name with SIGKILL: no shutdown at all.
func (c *chaosRun) kill(name string) {
	p := c.procs[name]
	_ = p.cmd.Process.Kill()
	<-p.scanned
	_ = p.cmd.Wait()
}

func (c *chaosRun) post(path, body string, out any) error {
	req, _ := http.NewRequest(http.MethodPost, c.base+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+chaosKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST %s: %d", path, resp.StatusCode)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// publish sends n events at rate per second; fault runs once, after half
// of them. It returns the IDs of the committed events.
func (c *chaosRun) publish(n int, rate float64, fault func()) []string {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := range n {
		<-tick.C
		if i == n/2 {
			fault()
		}
		wg.Go(func() {
			var ev struct{ ID string }
			if err := c.post("/v1/apps/"+c.appID+"/events", fmt.Sprintf(`{"type":"order.paid","payload":{"n":%d}}`, i), &ev); err != nil {
				c.t.Errorf("event %d not committed: %v", i, err)
				return
			}
			c.eventMu.Lock()
			c.events = append(c.events, ev.ID)
			c.eventMu.Unlock()
		})
	}
	wg.Wait()
	return c.events
}

// await waits until no committed event is missing an endpoint, or until
// limit, and reports the figures.
func (c *chaosRun) await(recv *chaosReceiver, events []string, limit time.Duration) {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(limit)
	for {
		lost, dups, unknown := recv.tally(events)
		if lost == 0 || time.Now().After(deadline) {
			c.t.Logf("%d events × %d endpoints: lost %d, duplicates %d (%.2f%%), unknown %d, settled %.1fs after the last event",
				len(events), chaosEndpoints, lost, dups, 100*float64(dups)/float64(len(events)*chaosEndpoints), unknown, time.Since(start).Seconds())
			if lost > 0 {
				c.t.Errorf("%d deliveries lost; %s", lost, c.diagnose())
			}
			if unknown > 0 {
				c.t.Errorf("%d deliveries of events never committed", unknown)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// diagnose describes where deliveries stand, in Postgres and in asynq.
func (c *chaosRun) diagnose() string {
	var b strings.Builder
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(c.dbURL)))
	defer db.Close()
	if rows, err := db.Query(`SELECT status, count(*) FROM deliveries GROUP BY 1`); err == nil {
		for rows.Next() {
			var status string
			var n int
			_ = rows.Scan(&status, &n)
			fmt.Fprintf(&b, " %s deliveries: %d;", status, n)
		}
		rows.Close()
	}
	for _, k := range strings.Fields(c.redis.cli("KEYS", "hookd:slots:*")) {
		fmt.Fprintf(&b, " %s holds %s slots;", k, c.redis.cli("ZCARD", k))
	}
	ins := asynq.NewInspector(asynq.RedisClientOpt{Addr: fmt.Sprintf("127.0.0.1:%d", c.redis.port)})
	defer ins.Close()
	queues, _ := ins.Queues()
	for _, q := range queues {
		if info, err := ins.GetQueueInfo(q); err == nil {
			fmt.Fprintf(&b, " %s: pending %d active %d scheduled %d retry %d archived %d completed %d;",
				q, info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived, info.Completed)
			retries, _ := ins.ListRetryTasks(q, asynq.PageSize(3))
			for _, r := range retries {
				fmt.Fprintf(&b, " retry %s: retried %d, next in %s, last error %q;", r.ID, r.Retried, time.Until(r.NextProcessAt).Round(time.Second), r.LastErr)
			}
		}
	}
	return b.String()
}

// TestFaults runs each fault scenario against its own hookd processes and
// private Redis.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hookd processes against Postgres and a private Redis")
	}
	// Not parallel: its timings (leases, reconciler passes) are its own.
	bin := build(t)
	const events, rate = 300, 60.0

	t.Run("RedisFlushAll", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		c := startChaos(t, bin, recv)
		// No worker runs until the flush: the first half's fan-outs wait
		// in Redis and are all lost with it.
		c.kill("worker1")
		c.kill("worker2")
		evs := c.publish(events, rate, func() {
			if got := c.redis.cli("FLUSHALL"); got != "OK" {
				t.Fatalf("FLUSHALL: %q", got)
			}
			c.start("worker1")
			c.start("worker2")
		})
		c.await(recv, evs, 90*time.Second)
	})

	t.Run("RedisRestart", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		c := startChaos(t, bin, recv)
		restarted := make(chan error, 1)
		evs := c.publish(events, rate, func() {
			c.redis.stop()
			go func() {
				time.Sleep(2 * time.Second) // events keep coming meanwhile
				restarted <- c.redis.start()
			}()
		})
		if err := <-restarted; err != nil {
			t.Fatal(err)
		}
		c.await(recv, evs, 90*time.Second)
	})

	t.Run("WorkersKilled", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		recv.delay = 300 * time.Millisecond // deliveries in flight when a worker dies
		c := startChaos(t, bin, recv)
		// A worker dies by SIGKILL every second, mid-delivery, and comes
		// back. asynq hands its tasks to another worker once their lease
		// has expired (30s) and its recoverer has passed (every minute).
		stop := make(chan struct{})
		killed := make(chan int)
		go func() {
			n := 0
			defer func() { killed <- n }()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				name := []string{"worker1", "worker2"}[rand.IntN(2)]
				c.kill(name)
				c.start(name)
				n++
			}
		}()
		evs := c.publish(events, rate, func() {})
		close(stop)
		t.Logf("%d workers killed", <-killed)
		c.await(recv, evs, 150*time.Second)
	})

	t.Run("RelayKilled", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		c := startChaos(t, bin, recv)
		evs := c.publish(events, rate, func() {
			c.kill("relay1")
			c.start("relay1")
		})
		c.await(recv, evs, 90*time.Second)
	})

	t.Run("ReceiverFailsAndHangs", func(t *testing.T) {
		recv := newChaosReceiver(t, 0.3, 0.02)
		c := startChaos(t, bin, recv)
		evs := c.publish(events, rate, func() {})
		c.await(recv, evs, 90*time.Second)
	})
}
