package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// The fault suite: the real binary as several processes (1 api, 2 relays
// with the reconciler, 2 workers) against Postgres, a private Redis the
// test starts on its own port, and a receiver that records webhook-ids.
// Events go in at a steady rate while a fault strikes; every committed
// event must then reach every subscribed endpoint at least once.

// chaosEndpoints is how many endpoints every event goes to.
const chaosEndpoints = 3

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

// tally counts the pairs of committed events and endpoints never
// received, the deliveries received more than once, those of events not
// committed, and those of rolled-back events.
func (r *chaosReceiver) tally(committed, rolledBack, endpoints []string) chaosFigures {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := chaosFigures{events: len(committed)}
	want := map[string]bool{}
	for _, ev := range committed {
		for _, ep := range endpoints {
			key := ep + " " + ev
			want[key] = true
			if r.seen[key] == 0 {
				f.lost++
			}
		}
	}
	rolled := map[string]bool{}
	for _, ev := range rolledBack {
		rolled[ev] = true
	}
	for key, n := range r.seen {
		if !want[key] {
			f.unknown++
		}
		if _, ev, _ := strings.Cut(key, " "); rolled[ev] {
			f.rolledBackDelivered++
		}
		f.dups += max(n-1, 0)
	}
	return f
}

// chaosOpts chooses what a scenario runs against.
type chaosOpts struct {
	// privatePostgres runs the scenario on a cluster of its own, which it
	// may restart; otherwise it gets a schema on the shared database.
	privatePostgres bool
	// refusalsExpected tolerates publish requests that fail: the fault
	// takes the api's database away or restarts the api. Whatever Postgres
	// holds at the end counts as committed, answered or not.
	refusalsExpected bool
	// redis is the Redis the processes use; nil starts one private
	// redis-server (c.redis).
	redis redisTopology
	// env is more settings of the hookd processes.
	env []string
	// endpoints subscribes the app's endpoints (c.addEndpoint); nil
	// subscribes chaosEndpoints of them.
	endpoints func(c *chaosRun)
}

// redisTopology is a Redis of the test's own, in one of hookd's modes.
type redisTopology interface {
	// env is the HOOKD_REDIS_* settings that reach it.
	env() []string
	// connOpt reaches it for the test's own inspection.
	connOpt() asynq.RedisConnOpt
}

// chaosRun is one scenario's hookd processes and what it published.
type chaosRun struct {
	t           *testing.T
	bin         string
	opts        chaosOpts
	dbURL       string
	db          *bun.DB // the test's own connection, for the producer's rollbacks and the final count
	env         []string
	apiPort     int
	base        string        // the api
	probes      string        // worker1's metrics address, which serves /readyz too
	redis       *privateRedis // the private redis-server, unless opts.redis is set
	topology    redisTopology
	pg          *privatePostgres
	procs       map[string]*hookdProcess
	client      *http.Client
	appID       string
	recv        *chaosReceiver
	made        int      // endpoints ever added
	endpoints   []string // the receiver's names of the app's endpoints
	endpointIDs []string

	mu         sync.Mutex
	acked      []string // events the api answered 201 to
	rolledBack []string // events written to the outbox in a transaction rolled back
	refused    int      // publish requests that failed
}

func startChaos(t *testing.T, bin string, recv *chaosReceiver, opts chaosOpts) *chaosRun {
	t.Helper()
	c := &chaosRun{t: t, bin: bin, opts: opts, topology: opts.redis, procs: map[string]*hookdProcess{},
		apiPort: freePort(t), client: &http.Client{Timeout: 10 * time.Second}}
	if c.topology == nil {
		c.redis = startPrivateRedis(t)
		c.topology = c.redis
	}
	c.base = fmt.Sprintf("http://127.0.0.1:%d", c.apiPort)
	c.probes = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	maxConns := 6 // five processes share the test database's connections with the other tests
	if opts.privatePostgres {
		c.pg = startPrivatePostgres(t)
		c.dbURL = c.pg.url()
		maxConns = 10
	} else {
		c.dbURL = outboxtest.SchemaURL(t)
	}
	c.db = bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(c.dbURL))), pgdialect.New())
	t.Cleanup(func() { _ = c.db.Close() })
	c.env = append(c.topology.env(),
		"HOOKD_DATABASE_URL="+c.dbURL,
		"HOOKD_ADMIN_API_KEY="+chaosKey,
		"HOOKD_ALLOW_PRIVATE_TARGETS=true",
		"HOOKD_METRICS_ADDR=off",
		"HOOKD_DATABASE_MAX_CONNS="+strconv.Itoa(maxConns),
		"HOOKD_RETRY_SCHEDULE=200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
		"HOOKD_DELIVERY_TIMEOUT=1s",
		"HOOKD_SHUTDOWN_TIMEOUT=2s",
		"HOOKD_CIRCUIT_THRESHOLD=1000",
		"HOOKD_RECONCILE_INTERVAL=1s",
		"HOOKD_RECONCILE_AFTER=3s",
	)
	c.env = append(c.env, opts.env...)
	cmd := exec.Command(bin, "migrate")
	cmd.Env = append(os.Environ(), c.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	for _, name := range chaosProcesses {
		c.start(name)
	}
	if !c.waitReady(30 * time.Second) {
		t.Fatal("the api did not become ready")
	}
	var app struct{ ID string }
	if err := c.post("/v1/apps", `{"name":"chaos"}`, &app); err != nil {
		t.Fatal(err)
	}
	c.appID = app.ID
	c.recv = recv
	if opts.endpoints != nil {
		opts.endpoints(c)
	} else {
		for range chaosEndpoints {
			c.addEndpoint()
		}
	}
	return c
}

// addEndpoint subscribes another endpoint of the receiver to the app's
// events and returns its ID.
func (c *chaosRun) addEndpoint() string {
	c.t.Helper()
	name := strconv.Itoa(c.made)
	c.made++
	var ep struct{ ID string }
	if err := c.post("/v1/apps/"+c.appID+"/endpoints", fmt.Sprintf(`{"url":"%s/ep/%s","event_types":["order.paid"]}`, c.recv.URL, name), &ep); err != nil {
		c.t.Fatal(err)
	}
	c.endpoints = append(c.endpoints, name)
	c.endpointIDs = append(c.endpointIDs, ep.ID)
	return ep.ID
}

// dropEndpoint deletes the i-th endpoint added, before any event.
func (c *chaosRun) dropEndpoint(i int) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, c.base+"/v1/apps/"+c.appID+"/endpoints/"+c.endpointIDs[i], nil)
	req.Header.Set("Authorization", "Bearer "+chaosKey)
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		c.t.Fatalf("delete endpoint %s: %s", c.endpointIDs[i], resp.Status)
	}
	c.endpoints = slices.Delete(c.endpoints, i, i+1)
	c.endpointIDs = slices.Delete(c.endpointIDs, i, i+1)
}

const chaosKey = "chaos-admin-key-0123456789"

// chaosProcesses are a scenario's processes; their roles follow from
// their names.
var chaosProcesses = []string{"api", "relay1", "relay2", "worker1", "worker2"}

// start runs process name.
func (c *chaosRun) start(name string) {
	roles := map[string]string{"api": "api", "relay1": "relay,reconciler", "relay2": "relay,reconciler", "worker1": "worker", "worker2": "worker"}[name]
	env := append(slices.Clone(c.env), "HOOKD_ROLES="+roles, "HOOKD_HTTP_ADDR=127.0.0.1:0")
	switch name { // their addresses stay the same across restarts
	case "api":
		env = append(env, "HOOKD_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(c.apiPort))
	case "worker1":
		env = append(env, "HOOKD_METRICS_ADDR="+c.probes)
	}
	c.procs[name] = startHookd(c.t, c.bin, name, env...)
}

// kill stops process name with SIGKILL: no shutdown at all.
func (c *chaosRun) kill(name string) {
	p := c.procs[name]
	_ = p.cmd.Process.Kill()
	<-p.scanned
	_ = p.cmd.Wait()
}

// killAndRestart kills process name with SIGKILL and starts it again.
func (c *chaosRun) killAndRestart(name string) {
	c.kill(name)
	c.start(name)
}

// every runs fault on one of names, picked at random, every period until
// the returned function is called; that function reports how many times
// it ran.
func (c *chaosRun) every(period time.Duration, names []string, fault func(name string)) (stop func() int) {
	done := make(chan struct{})
	count := make(chan int)
	go func() {
		n := 0
		defer func() { count <- n }()
		for {
			select {
			case <-done:
				return
			case <-time.After(period):
			}
			fault(names[rand.IntN(len(names))])
			n++
		}
	}()
	return func() int {
		close(done)
		return <-count
	}
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

// readiness returns the /readyz status and checks of the server at base
// (0 when it does not answer).
func (c *chaosRun) readiness(base string) (int, map[string]string) {
	resp, err := c.client.Get(base + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body struct{ Checks map[string]string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Checks
}

// waitReady waits up to limit for the api's /readyz, and worker1's, to
// answer 200.
func (c *chaosRun) waitReady(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for _, base := range []string{c.base, "http://" + c.probes} {
		for {
			if code, _ := c.readiness(base); code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return true
}

// expectUnready checks that the api's /readyz, and worker1's, answer 503
// naming check as unavailable within a few seconds.
func (c *chaosRun) expectUnready(check string) {
	for _, base := range []string{c.base, "http://" + c.probes} {
		var code int
		var checks map[string]string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if code, checks = c.readiness(base); code == http.StatusServiceUnavailable && checks[check] == "unavailable" {
				break
			}
			if time.Now().After(deadline) {
				c.t.Errorf("%s/readyz with %s down = %d %v, want 503 with %s unavailable", base, check, code, checks, check)
				break
			}
		}
	}
}

// publish sends n events at rate per second through the api, and every
// tenth a producer's transaction writing an event to the outbox and
// rolling back; fault runs once, after half of them.
func (c *chaosRun) publish(n int, rate float64, fault func()) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := range n {
		<-tick.C
		if i == n/2 {
			fault()
		}
		if i%10 == 5 {
			wg.Go(c.rollback)
		}
		wg.Go(func() {
			var ev struct{ ID string }
			err := c.post("/v1/apps/"+c.appID+"/events", fmt.Sprintf(`{"type":"order.paid","payload":{"n":%d}}`, i), &ev)
			c.mu.Lock()
			defer c.mu.Unlock()
			switch {
			case err == nil:
				c.acked = append(c.acked, ev.ID)
			case c.opts.refusalsExpected:
				c.refused++
			default:
				c.t.Errorf("event %d not committed: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// rollback writes an event the endpoints subscribe to in a transaction
// and rolls it back: it must never be delivered.
func (c *chaosRun) rollback() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return // Postgres is down: nothing written
	}
	defer func() { _ = tx.Rollback() }()
	msg := &outbox.Message{Tenant: c.appID, Topic: "order.paid", Payload: json.RawMessage(`{"rolled_back":true}`)}
	if err := outbox.Publish(ctx, tx, msg); err != nil {
		return
	}
	c.mu.Lock()
	c.rolledBack = append(c.rolledBack, msg.ID)
	c.mu.Unlock()
}

// committed returns the IDs of the app's events in Postgres: the truth
// about what was committed, whatever the api answered. Every event the api
// acknowledged must be among them.
func (c *chaosRun) committed() []string {
	c.t.Helper()
	var ids []string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = c.db.NewRaw(`SELECT id FROM outbox_events WHERE tenant = ?`, c.appID).Scan(c.t.Context(), &ids); err == nil {
			break
		}
	}
	if err != nil {
		c.t.Fatalf("read the committed events: %v", err)
	}
	in := map[string]bool{}
	for _, id := range ids {
		in[id] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	missing := 0
	for _, id := range c.acked {
		if !in[id] {
			missing++
		}
	}
	if missing > 0 {
		c.t.Errorf("%d events acknowledged with 201 are not in the outbox", missing)
	}
	for _, id := range c.rolledBack {
		if in[id] {
			c.t.Errorf("rolled-back event %s is in the outbox", id)
		}
	}
	return ids
}

// chaosFigures are a scenario's results.
type chaosFigures struct {
	events, lost, dups, unknown, rolledBackDelivered int
}

// await waits until no committed event is missing an endpoint, or until
// limit, checks the figures and reports them.
func (c *chaosRun) await(recv *chaosReceiver, limit time.Duration) chaosFigures {
	c.t.Helper()
	events := c.committed()
	start := time.Now()
	deadline := start.Add(limit)
	for {
		f := recv.tally(events, c.rolledBack, c.endpoints)
		if f.lost == 0 || time.Now().After(deadline) {
			c.mu.Lock()
			acked, refused, rolledBack := len(c.acked), c.refused, len(c.rolledBack)
			c.mu.Unlock()
			c.t.Logf("%d events committed (%d acknowledged, %d requests refused, %d rolled back) × %d endpoints: lost %d, duplicates %d (%.2f%%), unknown %d, settled %.1fs after the last event",
				f.events, acked, refused, rolledBack, len(c.endpoints), f.lost, f.dups, 100*float64(f.dups)/float64(max(f.events*len(c.endpoints), 1)), f.unknown, time.Since(start).Seconds())
			if f.lost > 0 {
				c.t.Errorf("%d deliveries not made within %s (lost, or too slow); %s", f.lost, limit, c.diagnose())
			}
			if f.unknown > 0 {
				c.t.Errorf("%d deliveries of events never committed", f.unknown)
			}
			if f.rolledBackDelivered > 0 {
				c.t.Errorf("%d deliveries of rolled-back events", f.rolledBackDelivered)
			}
			if f.events == 0 {
				c.t.Error("no event was committed")
			}
			return f
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finish checks that every process outlived the fault, then stops them
// all with SIGTERM: each must exit cleanly within its shutdown timeout.
func (c *chaosRun) finish() {
	c.t.Helper()
	for _, name := range chaosProcesses {
		select {
		case <-c.procs[name].scanned:
			c.t.Errorf("%s exited during the scenario", name)
		default:
		}
	}
	var wg sync.WaitGroup
	for _, name := range chaosProcesses {
		wg.Go(func() {
			select { // until main handles SIGTERM, SIGTERM kills
			case <-c.procs[name].running:
			case <-time.After(30 * time.Second):
				c.t.Errorf("%s never started", name)
			}
			c.procs[name].stop(c.t)
		})
	}
	wg.Wait()
}

// diagnose describes where deliveries stand, in Postgres and in asynq.
func (c *chaosRun) diagnose() string {
	var b strings.Builder
	if rows, err := c.db.QueryContext(context.Background(), `SELECT status, count(*) FROM deliveries GROUP BY 1`); err == nil {
		for rows.Next() {
			var status string
			var n int
			_ = rows.Scan(&status, &n)
			fmt.Fprintf(&b, " %s deliveries: %d;", status, n)
		}
		rows.Close()
	}
	if c.redis != nil {
		for _, k := range strings.Fields(c.redis.cli("KEYS", "hookd:{*}:slots")) {
			fmt.Fprintf(&b, " %s holds %s slots;", k, c.redis.cli("ZCARD", k))
		}
	}
	ins := asynq.NewInspector(c.topology.connOpt())
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

// expectListening waits up to 15s for want sessions of the private
// Postgres to listen on channel.
func (c *chaosRun) expectListening(channel string, want int, when string) {
	c.t.Helper()
	n := 0
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		err := c.db.NewRaw(`SELECT count(*) FROM pg_stat_activity WHERE query = ?`, `LISTEN "`+channel+`"`).Scan(c.t.Context(), &n)
		if err == nil && n == want {
			return
		}
	}
	c.t.Errorf("%d sessions listen on %s %s, want %d", n, channel, when, want)
}

// envInt reads a positive integer from the environment, or returns def.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestFaults runs each fault scenario against its own hookd processes,
// private Redis and, where it restarts Postgres, private Postgres.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hookd processes against Postgres and a private Redis")
	}
	// Not parallel: its timings (leases, reconciler passes) are its own.
	bin := build(t)
	// HOOKD_CHAOS_EVENTS and HOOKD_CHAOS_RATE make a longer soak of it
	// (`go tool task chaos:soak`).
	events, rate := envInt(t, "HOOKD_CHAOS_EVENTS", 1000), float64(envInt(t, "HOOKD_CHAOS_RATE", 100))
	// Time to settle after the last event: a base per scenario for 1,000
	// events, longer for more (slow receivers drain at their endpoints'
	// concurrency, whatever the rate).
	settle := func(base time.Duration) time.Duration {
		return time.Duration(float64(base)*max(1, float64(events)/1000)) + time.Duration(float64(events)/rate*float64(time.Second))
	}

	t.Run("WorkersKilled", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		recv.delay = 300 * time.Millisecond // deliveries in flight when a worker dies
		c := startChaos(t, bin, recv, chaosOpts{})
		// A worker dies by SIGKILL every second, mid-delivery, and comes
		// back. asynq hands its tasks to another worker once their lease
		// has expired (30s) and its recoverer has passed (every minute).
		stop := c.every(time.Second, []string{"worker1", "worker2"}, c.killAndRestart)
		c.publish(events, rate, func() {})
		t.Logf("%d workers killed", stop())
		c.await(recv, settle(150*time.Second))
		c.finish()
	})

	t.Run("RelayKilled", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		c := startChaos(t, bin, recv, chaosOpts{})
		// A relay dies every 700ms, wherever it is in its batches.
		stop := c.every(700*time.Millisecond, []string{"relay1", "relay2"}, c.killAndRestart)
		c.publish(events, rate, func() {})
		t.Logf("%d relays killed", stop())
		c.await(recv, settle(90*time.Second))
		c.finish()
	})

	t.Run("RedisFlushAll", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		c := startChaos(t, bin, recv, chaosOpts{})
		// No worker runs until the flush: the first half's fan-outs wait
		// in Redis and are all lost with it.
		c.kill("worker1")
		c.kill("worker2")
		c.publish(events, rate, func() {
			if got := c.redis.cli("FLUSHALL"); got != "OK" {
				t.Fatalf("FLUSHALL: %q", got)
			}
			c.start("worker1")
			c.start("worker2")
		})
		c.await(recv, settle(90*time.Second))
		c.finish()
	})

	t.Run("RedisRestart", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		c := startChaos(t, bin, recv, chaosOpts{})
		restarted := make(chan error, 1)
		c.publish(events, rate, func() {
			c.redis.stop()
			go func() {
				c.expectUnready("redis")
				time.Sleep(2 * time.Second) // events keep coming meanwhile
				restarted <- c.redis.start()
			}()
		})
		if err := <-restarted; err != nil {
			t.Fatal(err)
		}
		c.await(recv, settle(90*time.Second))
		if !c.waitReady(10 * time.Second) {
			t.Error("/readyz did not answer 200 after Redis came back")
		}
		c.finish()
	})

	t.Run("PostgresRestart", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		c := startChaos(t, bin, recv, chaosOpts{privatePostgres: true, refusalsExpected: true})
		// The relays listen for the outbox, the workers' endpoint caches
		// for endpoint changes.
		listeners := map[string]int{"outbox_events": 2, "hookd_endpoints": 2}
		for channel, want := range listeners {
			c.expectListening(channel, want, "before the restart")
		}
		restarted := make(chan error, 1)
		c.publish(events, rate, func() {
			if err := c.pg.stop(); err != nil {
				t.Error(err)
			}
			go func() {
				c.expectUnready("postgres")
				time.Sleep(2 * time.Second)
				restarted <- c.pg.start()
			}()
		})
		if err := <-restarted; err != nil {
			t.Fatal(err)
		}
		c.await(recv, settle(90*time.Second))
		if !c.waitReady(10 * time.Second) {
			t.Error("/readyz did not answer 200 after Postgres came back")
		}
		for channel, want := range listeners {
			c.expectListening(channel, want, "after the restart")
		}
		c.finish()
	})

	t.Run("ReceiverFailsAndHangs", func(t *testing.T) {
		recv := newChaosReceiver(t, 0.3, 0.02)
		c := startChaos(t, bin, recv, chaosOpts{})
		c.publish(events, rate, func() {})
		c.await(recv, settle(90*time.Second))
		c.finish()
	})

	t.Run("GracefulRestarts", func(t *testing.T) {
		recv := newChaosReceiver(t, 0, 0)
		recv.delay = 300 * time.Millisecond // deliveries in flight when SIGTERM comes
		c := startChaos(t, bin, recv, chaosOpts{refusalsExpected: true})
		// Every second a process, api included, gets SIGTERM, must exit
		// cleanly within its shutdown timeout, and is started again.
		stop := c.every(time.Second, chaosProcesses, func(name string) {
			c.procs[name].stop(t)
			c.start(name)
			// Until main has set up its signal handling, SIGTERM kills.
			select {
			case <-c.procs[name].running:
			case <-time.After(30 * time.Second):
				t.Errorf("%s did not start again", name)
			}
		})
		c.publish(events, rate, func() {})
		t.Logf("%d processes restarted", stop())
		if !c.waitReady(30 * time.Second) {
			t.Fatal("the api did not come back")
		}
		f := c.await(recv, settle(90*time.Second))
		// In-flight deliveries finish and are recorded before a worker
		// exits: none is sent twice.
		if f.dups > 0 {
			t.Errorf("%d duplicates after graceful restarts, want 0", f.dups)
		}
		c.finish()
	})
}
