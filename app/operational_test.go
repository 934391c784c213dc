package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"database/sql"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// The operational webhook tests run hookd with HOOKD_OPERATIONAL_APP set
// and drive customer endpoints through failing, recovered, disabled and
// enabled, and deliveries into dead letters. Their helpers carry an ops
// prefix.

// opsStart runs hookd on a schema where an operational app exists before
// it starts, with HOOKD_OPERATIONAL_APP naming it; it returns the harness
// and the app's ID.
func opsStart(t *testing.T, env map[string]string) (*harness, string) {
	t.Helper()
	dbURL := outboxtest.SchemaURL(t)
	db := bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dbURL))), pgdialect.New())
	defer db.Close()
	if err := app.Migrate(t.Context(), db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	ops, err := registry.New(db, registry.Config{}).CreateApp(t.Context(), registry.AppInput{Name: "operations"})
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HOOKD_DATABASE_URL": dbURL, "HOOKD_OPERATIONAL_APP": ops.ID}
	for k, v := range env {
		vars[k] = v
	}
	return start(t, vars), ops.ID
}

// opsEvent is an operational webhook as a receiver gets it.
type opsEvent struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
	header    http.Header
	body      []byte
}

// opsData is the union of the operational webhooks' fields.
type opsData struct {
	AppID          string     `json:"app_id"`
	EndpointID     string     `json:"endpoint_id"`
	Trigger        string     `json:"trigger"`
	Reason         string     `json:"reason"`
	FailingSince   *time.Time `json:"failing_since"`
	DisabledAt     *time.Time `json:"disabled_at"`
	EnabledAt      *time.Time `json:"enabled_at"`
	RecoveredAt    *time.Time `json:"recovered_at"`
	DeliveryID     string     `json:"delivery_id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	Attempts       int        `json:"attempts"`
	LastError      *string    `json:"last_error"`
	LastStatusCode *int       `json:"last_status_code"`
}

func (e opsEvent) data(t *testing.T) opsData {
	t.Helper()
	var d opsData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatalf("data of %s: %v", e.Type, err)
	}
	return d
}

// opsEvents decodes what r received, in order.
func opsEvents(t *testing.T, r *receiver) []opsEvent {
	t.Helper()
	var evs []opsEvent
	for _, got := range r.got() {
		var e opsEvent
		if err := json.Unmarshal(got.body, &e); err != nil {
			t.Fatalf("operational webhook %s: %v", got.body, err)
		}
		e.header, e.body = got.header, got.body
		evs = append(evs, e)
	}
	return evs
}

// opsOfType returns those of evs of type typ about endpoint id (any when
// "").
func opsOfType(t *testing.T, evs []opsEvent, typ, endpointID string) []opsEvent {
	t.Helper()
	var out []opsEvent
	for _, e := range evs {
		if e.Type == typ && (endpointID == "" || e.data(t).EndpointID == endpointID) {
			out = append(out, e)
		}
	}
	return out
}

// opsWait waits until r received n operational webhooks of type typ about
// endpoint id, and returns them.
func opsWait(t *testing.T, r *receiver, typ, endpointID string, n int) []opsEvent {
	t.Helper()
	var got []opsEvent
	waitFor(t, typ+" of "+endpointID, func() bool {
		got = opsOfType(t, opsEvents(t, r), typ, endpointID)
		return len(got) >= n
	})
	return got
}

// opsSwitch is a receiver whose answer the test sets.
type opsSwitch struct {
	*receiver
	status atomic.Int32
}

func newOpsSwitch(t *testing.T, status int) *opsSwitch {
	s := &opsSwitch{}
	s.status.Store(int32(status))
	s.receiver = newReceiver(t, func(int) int { return int(s.status.Load()) })
	return s
}

// TestOperationalWebhooks drives a customer endpoint through a failing
// streak, its recovery, a 410 that disables it, its enabling and a manual
// disabling, with deliveries dead-lettered on the way: the operational
// app's endpoint receives each change once, signed, with its fields, and
// each payload passes the schema registered for its type.
func TestOperationalWebhooks(t *testing.T) {
	t.Parallel()
	h, opsID := opsStart(t, map[string]string{
		"HOOKD_RETRY_SCHEDULE": "20ms,20ms",
		// Only attempts make health, and an open circuit makes none.
		"HOOKD_CIRCUIT_THRESHOLD": "1000",
	})
	opsRecv := newReceiver(t, nil)
	opsEp := h.mustCreate("/v1/apps/"+opsID+"/endpoints", map[string]any{"url": opsRecv.URL})
	customer := newOpsSwitch(t, http.StatusInternalServerError)
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, customer.URL)

	// Three failed attempts: one failing event, one dead letter.
	ev1 := dlvPublish(h, appID, "order.created")
	dlv1 := dlvDeliveryID(h, ev1, epID)
	exhausted := opsWait(t, opsRecv, "hookd.delivery.exhausted", epID, 1)
	failing := opsWait(t, opsRecv, "hookd.endpoint.failing", epID, 1)
	ep := dlvGetEndpoint(h, appID, epID)
	if f := failing[0].data(t); f.AppID != appID || f.FailingSince == nil || ep.FailingSince == nil ||
		!f.FailingSince.Equal(*ep.FailingSince) || f.Reason != "HTTP 500" {
		t.Errorf("failing = %s, want app %s, failing_since %v, reason HTTP 500", failing[0].Data, appID, ep.FailingSince)
	}
	if x := exhausted[0].data(t); x.AppID != appID || x.DeliveryID != dlv1 || x.EventID != ev1 || x.EventType != "order.created" ||
		x.Attempts != 3 || x.LastStatusCode == nil || *x.LastStatusCode != 500 || x.LastError == nil || *x.LastError != "HTTP 500" {
		t.Errorf("exhausted = %s, want delivery %s of %s after 3 attempts, last HTTP 500", exhausted[0].Data, dlv1, ev1)
	}

	// A success ends the streak.
	customer.status.Store(http.StatusNoContent)
	ev2 := dlvPublish(h, appID, "order.created")
	dlvWaitStatus(h, appID, dlvDeliveryID(h, ev2, epID), "succeeded")
	recovered := opsWait(t, opsRecv, "hookd.endpoint.recovered", epID, 1)
	if r := recovered[0].data(t); r.FailingSince == nil || !r.FailingSince.Equal(*ep.FailingSince) || r.RecoveredAt == nil || r.RecoveredAt.Before(*r.FailingSince) {
		t.Errorf("recovered = %s, want the streak from %v and when it ended", recovered[0].Data, ep.FailingSince)
	}

	// A 410 disables the endpoint at once and dead-letters the delivery.
	customer.status.Store(http.StatusGone)
	ev3 := dlvPublish(h, appID, "order.created")
	dlv3 := dlvDeliveryID(h, ev3, epID)
	disabled := opsWait(t, opsRecv, "hookd.endpoint.disabled", epID, 1)
	opsWait(t, opsRecv, "hookd.delivery.exhausted", epID, 2)
	ep = dlvGetEndpoint(h, appID, epID)
	if d := disabled[0].data(t); d.Trigger != "automatic" || !strings.Contains(d.Reason, "410") || d.DisabledAt == nil ||
		ep.DisabledAt == nil || !d.DisabledAt.Equal(*ep.DisabledAt) {
		t.Errorf("disabled = %s, want automatic, for the 410, at %v", disabled[0].Data, ep.DisabledAt)
	}
	x := opsOfType(t, opsEvents(t, opsRecv), "hookd.delivery.exhausted", epID)[1].data(t)
	if x.DeliveryID != dlv3 || x.Attempts != 1 || x.LastStatusCode == nil || *x.LastStatusCode != http.StatusGone {
		t.Errorf("second exhausted = %+v, want delivery %s after one 410", x, dlv3)
	}

	// Enabled through the API, then disabled through it.
	dlvMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints/"+epID+"/enable", "", http.StatusOK, nil)
	enabled := opsWait(t, opsRecv, "hookd.endpoint.enabled", epID, 1)
	if e := enabled[0].data(t); e.EnabledAt == nil || e.AppID != appID {
		t.Errorf("enabled = %s", enabled[0].Data)
	}
	// Enabling an enabled endpoint changes nothing: no event.
	dlvMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints/"+epID+"/enable", "", http.StatusOK, nil)
	dlvMust(h, http.MethodPost, "/v1/apps/"+appID+"/endpoints/"+epID+"/disable", `{"reason":"maintenance"}`, http.StatusOK, nil)
	manual := opsWait(t, opsRecv, "hookd.endpoint.disabled", epID, 2)[1].data(t)
	if manual.Trigger != "manual" || manual.Reason != "maintenance" {
		t.Errorf("manual disable = %+v, want trigger manual, reason maintenance", manual)
	}

	// Each change once: a 410 that disables tells no failing; the
	// streak's three failures one.
	time.Sleep(300 * time.Millisecond) // time for a duplicate to arrive
	evs := opsEvents(t, opsRecv)
	want := map[string]int{
		"hookd.endpoint.failing": 1, "hookd.endpoint.recovered": 1, "hookd.endpoint.disabled": 2,
		"hookd.endpoint.enabled": 1, "hookd.delivery.exhausted": 2,
	}
	for typ, n := range want {
		if got := len(opsOfType(t, evs, typ, epID)); got != n {
			t.Errorf("%d %s webhooks, want %d", got, typ, n)
		}
		if got := h.metricValue("hookd_operational_events_total", map[string]string{"type": typ}); got != float64(n) {
			t.Errorf("hookd_operational_events_total{type=%q} = %v, want %d", typ, got, n)
		}
	}
	if len(evs) != 7 {
		t.Errorf("the operational endpoint got %d webhooks, want 7", len(evs))
	}

	// Signed as any webhook, and each payload valid under its registered
	// schema: published through the API into another app, it is accepted.
	wh, err := standardwebhooks.NewWebhook(opsEp.Secret)
	if err != nil {
		t.Fatal(err)
	}
	scratch := dlvApp(h)
	for _, e := range evs {
		if err := wh.Verify(e.body, e.header); err != nil {
			t.Errorf("%s: signature rejected: %v", e.Type, err)
		}
		body, _ := json.Marshal(map[string]any{"type": e.Type, "payload": e.Data})
		if code, b := dlvDo(h, http.MethodPost, "/v1/apps/"+scratch+"/events", string(body)); code != http.StatusCreated {
			t.Errorf("%s payload %s against its schema: %d %s", e.Type, e.Data, code, b)
		}
		if strings.Contains(string(e.Data), "127.0.0.1") || strings.Contains(string(e.Data), customer.URL) {
			t.Errorf("%s carries an address: %s", e.Type, e.Data)
		}
	}
	var types []struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
	}
	for typ := range want {
		var et struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
		}
		dlvMust(h, http.MethodGet, "/v1/event-types/"+typ, "", http.StatusOK, &et)
		if len(et.Schema) == 0 || string(et.Schema) == "null" {
			t.Errorf("event type %s has no schema", typ)
		}
		types = append(types, et)
	}
	if len(types) != 5 {
		t.Errorf("%d operational event types registered, want 5", len(types))
	}
}

// TestOperationalWebhooksCauseNoOther: the operational app's own
// endpoints failing, disabled or dead-lettering publish nothing, so an
// operational webhook never causes another.
func TestOperationalWebhooksCauseNoOther(t *testing.T) {
	t.Parallel()
	h, opsID := opsStart(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "20ms,20ms", "HOOKD_CIRCUIT_THRESHOLD": "1000"})
	broken := newReceiver(t, func(n int) int {
		if n == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusGone
	})
	witness := newReceiver(t, nil)
	brokenID := dlvAddEndpoint(h, opsID, broken.URL)
	dlvAddEndpoint(h, opsID, witness.URL)
	customer := newReceiver(t, func(int) int { return http.StatusGone })
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, customer.URL)

	// The customer's 410: disabled and exhausted, two webhooks each to the
	// operational endpoints. The broken one fails the first (its streak
	// begins) and answers the second 410 (it is disabled, and both of its
	// deliveries become dead letters).
	dlvPublish(h, appID, "order.created")
	waitFor(t, "the broken operational endpoint to be disabled", func() bool { return dlvGetEndpoint(h, opsID, brokenID).Disabled })
	waitFor(t, "its deliveries to be dead letters", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE endpoint_id = ? AND status = 'failed'`, brokenID) >= 2
	})
	dlvMust(h, http.MethodPost, "/v1/apps/"+opsID+"/endpoints/"+brokenID+"/enable", "", http.StatusOK, nil)
	dlvMust(h, http.MethodPost, "/v1/apps/"+opsID+"/endpoints/"+brokenID+"/disable", "", http.StatusOK, nil)
	waitFor(t, "the witness to get both webhooks", func() bool { return len(witness.got()) >= 2 })
	time.Sleep(300 * time.Millisecond) // time for a loop to show

	var topics []string
	if err := h.db.NewRaw(`SELECT topic FROM outbox_events WHERE tenant = ? ORDER BY seq`, opsID).Scan(t.Context(), &topics); err != nil {
		t.Fatal(err)
	}
	if strings.Join(topics, ",") != "hookd.endpoint.disabled,hookd.delivery.exhausted" {
		t.Errorf("operational events %v, want the customer's disabled and exhausted only", topics)
	}
	for _, e := range opsEvents(t, witness) {
		if d := e.data(t); d.EndpointID != epID {
			t.Errorf("the witness got %s about %s, not the customer's endpoint", e.Type, d.EndpointID)
		}
	}
	if n := len(witness.got()); n != 2 {
		t.Errorf("the witness got %d webhooks, want 2", n)
	}
}

// TestOperationalWebhookCommitsWithItsChange: an operational webhook that
// cannot be written rolls its change back (the endpoint stays as it was),
// and a change rolled back publishes nothing; once the write works again,
// the change and its webhook commit together.
func TestOperationalWebhookCommitsWithItsChange(t *testing.T) {
	t.Parallel()
	h, opsID := opsStart(t, map[string]string{
		"HOOKD_RETRY_SCHEDULE":    strings.Repeat("100ms,", 49) + "100ms",
		"HOOKD_CIRCUIT_THRESHOLD": "1000",
	})
	// Postgres refuses the operational app's events while the trigger
	// stands.
	exec := func(q string) {
		t.Helper()
		if _, err := h.db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE FUNCTION refuse_ops() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$`)
	exec(`CREATE TRIGGER refuse_ops BEFORE INSERT ON outbox_events FOR EACH ROW WHEN (NEW.tenant = '` + opsID + `') EXECUTE FUNCTION refuse_ops()`)
	opsCount := func() int { return h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ?`, opsID) }

	customer := newOpsSwitch(t, http.StatusInternalServerError)
	appID := dlvApp(h)
	epID := dlvAddEndpoint(h, appID, customer.URL)

	// The API's disabling fails, and the endpoint stays enabled.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.base+"/v1/apps/"+appID+"/endpoints/"+epID+"/disable", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("disable while its event is refused = %d, want 500", resp.StatusCode)
	}
	if ep := dlvGetEndpoint(h, appID, epID); ep.Disabled {
		t.Errorf("endpoint disabled though its event was refused: %+v", ep)
	}

	// Failed attempts cannot begin the streak either.
	dlvPublish(h, appID, "order.created")
	waitFor(t, "failed attempts", func() bool { return len(customer.got()) >= 3 })
	if ep := dlvGetEndpoint(h, appID, epID); ep.FailingSince != nil {
		t.Errorf("failing_since = %v though the failing event was refused", ep.FailingSince)
	}
	if n := opsCount(); n != 0 {
		t.Errorf("%d operational events written while refused", n)
	}

	// Accepted again, the next failure begins the streak with its event.
	exec(`DROP TRIGGER refuse_ops ON outbox_events`)
	waitFor(t, "the streak to begin", func() bool { return dlvGetEndpoint(h, appID, epID).FailingSince != nil })
	if n := h.count(`SELECT count(*) FROM outbox_events WHERE tenant = ? AND topic = 'hookd.endpoint.failing'`, opsID); n != 1 {
		t.Errorf("%d failing events with the streak, want 1", n)
	}
	customer.status.Store(http.StatusNoContent) // let the delivery end
}

// TestOperationalAppMustExist: HOOKD_OPERATIONAL_APP naming no app stops
// hookd from starting, with a message naming the variable; a value that is
// no app ID is refused with the configuration.
func TestOperationalAppMustExist(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"HOOKD_DATABASE_URL":    outboxtest.SchemaURL(t),
		"HOOKD_REDIS_URL":       testRedisURL(t),
		"HOOKD_HTTP_ADDR":       "127.0.0.1:0",
		"HOOKD_METRICS_ADDR":    "off",
		"HOOKD_OPERATIONAL_APP": "app_00000000000000000000000000",
	}
	cfg, err := app.ParseConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		a.Close()
		t.Fatal("hookd started with HOOKD_OPERATIONAL_APP naming no app")
	}
	if !strings.Contains(err.Error(), "HOOKD_OPERATIONAL_APP") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("error %q, want it to name HOOKD_OPERATIONAL_APP and say the app does not exist", err)
	}
	vars["HOOKD_OPERATIONAL_APP"] = "operations"
	if _, err := app.ParseConfig(func(k string) string { return vars[k] }); err == nil || !strings.Contains(err.Error(), "HOOKD_OPERATIONAL_APP") {
		t.Errorf("ParseConfig of a name = %v, want an error naming HOOKD_OPERATIONAL_APP", err)
	}
}

// TestEndpointChangesToldOnce races many attempts' outcomes, and API
// calls, on one endpoint: each change of its state is told once, however
// many make it at the same moment.
func TestEndpointChangesToldOnce(t *testing.T) {
	t.Parallel()
	dbURL := outboxtest.SchemaURL(t)
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dbURL)))
	sqldb.SetMaxOpenConns(8)
	db := bun.NewDB(sqldb, pgdialect.New())
	defer db.Close()
	if err := app.Migrate(t.Context(), db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	var (
		mu   sync.Mutex
		told = map[string]int{}
	)
	reg := registry.New(db, registry.Config{AllowPrivateTargets: true, EndpointChanged: func(_ context.Context, _ bun.Tx, c registry.EndpointChange) error {
		mu.Lock()
		defer mu.Unlock()
		told[c.Kind]++
		return nil
	}})
	a, err := reg.CreateApp(t.Context(), registry.AppInput{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	ep, _, err := reg.CreateEndpoint(t.Context(), a.ID, registry.EndpointInput{URL: "https://hooks.example/x"})
	if err != nil {
		t.Fatal(err)
	}
	race := func(what string, f func() error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Go(func() { errs <- f() })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	health := reg.Health()
	check := func(after string, want map[string]int) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for k, n := range want {
			if told[k] != n {
				t.Errorf("after %s: %s told %d times, want %d (all: %v)", after, k, told[k], n, told)
			}
		}
	}
	race("failures", func() error { _, err := health.Failed(t.Context(), ep.ID, false, "HTTP 500"); return err })
	check("concurrent failures", map[string]int{registry.ChangeFailing: 1})
	race("successes", func() error { return health.Succeeded(t.Context(), ep.ID) })
	check("concurrent successes", map[string]int{registry.ChangeFailing: 1, registry.ChangeRecovered: 1})
	race("410s", func() error { _, err := health.Failed(t.Context(), ep.ID, true, "HTTP 410"); return err })
	check("concurrent 410s", map[string]int{registry.ChangeFailing: 1, registry.ChangeRecovered: 1, registry.ChangeDisabled: 1})
	race("enables", func() error { _, err := reg.SetEndpointDisabled(t.Context(), a.ID, ep.ID, false, ""); return err })
	check("concurrent enables", map[string]int{registry.ChangeDisabled: 1, registry.ChangeEnabled: 1})
	race("disables", func() error { _, err := reg.SetEndpointDisabled(t.Context(), a.ID, ep.ID, true, ""); return err })
	check("concurrent disables", map[string]int{registry.ChangeDisabled: 2, registry.ChangeEnabled: 1})
}
