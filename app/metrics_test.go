package app_test

import (
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// metricValue sums the samples of metric name whose labels include labels:
// counter and gauge values, or histogram sample counts.
func (h *harness) metricValue(name string, labels map[string]string) float64 {
	h.t.Helper()
	families, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatalf("gather metrics: %v", err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestMetricsFollowRealDeliveries checks the metrics after real traffic:
// what the relay published, the fan-out, every attempt by outcome, the
// end-to-end latency, a dead letter and its replay, the API's requests and
// the outbox and queue gauges.
func TestMetricsFollowRealDeliveries(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms"})
	ok := newReceiver(t, nil)
	failing, recovered := switchable(t)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "acme"}).ID
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": ok.URL, "event_types": []string{"order.paid"}})
	h.mustCreate("/v1/apps/"+appID+"/endpoints", map[string]any{"url": failing.URL, "event_types": []string{"order.failed"}})
	for i := range 3 {
		h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": i}})
	}
	h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.failed", "payload": map[string]any{"n": 9}})
	waitFor(t, "3 deliveries and a dead letter", func() bool {
		return h.count(`SELECT count(*) FROM deliveries WHERE status = 'succeeded'`) == 3 &&
			h.count(`SELECT count(*) FROM deliveries WHERE status = 'failed'`) == 1
	})
	waitFor(t, "the dead letter to be counted", func() bool { return h.metricValue("hookd_dead_letters_total", nil) == 1 })

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hookd_outbox_published_total", nil, 4},
		{"hookd_fanout_events_total", nil, 4},
		// The fan-out makes every first attempt: only the failing one's
		// retry is a task.
		{"hookd_fanout_first_attempts_total", nil, 4},
		{"hookd_fanout_deliveries_enqueued_total", nil, 1},
		{"hookd_fanout_deliveries_per_event", nil, 4},
		{"hookd_delivery_attempts_total", map[string]string{"outcome": "success"}, 3},
		{"hookd_delivery_attempts_total", map[string]string{"outcome": "http_5xx"}, 2},
		{"hookd_delivery_attempt_duration_seconds", map[string]string{"outcome": "success"}, 3},
		{"hookd_delivery_latency_seconds", nil, 3},
		{"hookd_dead_letters_total", nil, 1},
		{"hookd_dead_letters_replayed_total", nil, 0},
		{"hookd_http_requests_total", map[string]string{"method": "POST", "route": "/v1/apps/{app_id}/events", "code": "201"}, 4},
		{"hookd_http_request_duration_seconds", map[string]string{"method": "POST", "route": "/v1/apps/{app_id}/events"}, 4},
		{"hookd_outbox_pending_rows", nil, 0},
		{"hookd_outbox_lag_seconds", nil, 0},
		{"hookd_outbox_scrape_success", nil, 1},
		{"hookd_relay_errors_total", nil, 0},
	} {
		if got := h.metricValue(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := h.metricValue("hookd_relay_batch_size", nil); n < 1 {
		t.Errorf("hookd_relay_batch_size has %v samples, want some", n)
	}
	// asynq counts a task processed after its handler recorded it: the
	// retry of the failing delivery.
	waitFor(t, "asynq_tasks_processed_total to count the retry", func() bool {
		return h.metricValue("asynq_tasks_processed_total", map[string]string{"queue": h.queues[1]}) >= 1
	})
	// asynq archives the task after the handler marked the delivery failed.
	waitFor(t, "the dead letter's task in asynq_tasks_enqueued_total{state=archived}", func() bool {
		return h.metricValue("asynq_tasks_enqueued_total", map[string]string{"queue": h.queues[1], "state": "archived"}) == 1
	})

	// A replay is counted, and so is its success.
	recovered.Store(true)
	var dl deadLetterPage
	h.do(http.MethodGet, "/v1/dead-letters?app_id="+appID, nil, &dl)
	if len(dl.Data) != 1 {
		t.Fatalf("dead letters = %+v", dl.Data)
	}
	if code := h.do(http.MethodPost, "/v1/dead-letters/"+dl.Data[0].DeliveryID+"/retry", nil, nil); code != http.StatusAccepted {
		t.Fatalf("retry = %d", code)
	}
	waitFor(t, "the replayed delivery to succeed", func() bool {
		return h.metricValue("hookd_delivery_attempts_total", map[string]string{"outcome": "success"}) == 4
	})
	if n := h.metricValue("hookd_dead_letters_replayed_total", nil); n != 1 {
		t.Errorf("hookd_dead_letters_replayed_total = %v, want 1", n)
	}
}

// TestPprof checks that Go's profiles are served on the metrics listener
// only with HOOKD_PPROF=true: they need no key.
func TestPprof(t *testing.T) {
	t.Parallel()

	get := func(t *testing.T, h *harness, path string) int {
		t.Helper()
		resp, err := http.Get(h.metricsBase + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	paths := []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/symbol"}

	t.Run("OffByDefault", func(t *testing.T) {
		t.Parallel()
		h := start(t, nil)
		for _, p := range paths {
			if code := get(t, h, p); code != http.StatusNotFound {
				t.Errorf("GET %s without HOOKD_PPROF = %d, want 404", p, code)
			}
		}
		if code := get(t, h, "/metrics"); code != http.StatusOK {
			t.Errorf("GET /metrics = %d, want 200", code)
		}
	})
	t.Run("OnRequest", func(t *testing.T) {
		t.Parallel()
		h := start(t, map[string]string{"HOOKD_PPROF": "true"})
		for _, p := range paths {
			if code := get(t, h, p); code != http.StatusOK {
				t.Errorf("GET %s with HOOKD_PPROF=true = %d, want 200", p, code)
			}
		}
	})
}
