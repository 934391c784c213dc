package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// fifoRecv is a FIFO endpoint's receiver: each event's payload carries
// its number n, and answer(n) decides the status. It records the n of
// every request in arrival order, and how many were in flight at once.
type fifoRecv struct {
	*httptest.Server
	answer func(n int, r *http.Request) int

	mu          sync.Mutex
	ns          []int
	maxInFlight int
	inFlight    int
}

func newFIFORecv(t *testing.T, answer func(n int, r *http.Request) int) *fifoRecv {
	f := &fifoRecv{answer: answer}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msg struct {
			Data struct{ N int } `json:"data"`
		}
		_ = json.Unmarshal(b, &msg)
		f.mu.Lock()
		f.ns = append(f.ns, msg.Data.N)
		f.inFlight++
		f.maxInFlight = max(f.maxInFlight, f.inFlight)
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			f.inFlight--
			f.mu.Unlock()
		}()
		w.WriteHeader(f.answer(msg.Data.N, r))
	}))
	t.Cleanup(f.Close)
	return f
}

// requests returns the n of every request so far, in arrival order.
func (f *fifoRecv) requests() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ns)
}

// fifoSetup makes an app with a FIFO endpoint on recv and returns their
// IDs.
func fifoSetup(t *testing.T, h *harness, recv *fifoRecv) (appID, epID string) {
	t.Helper()
	appID = h.mustCreate("/v1/apps", map[string]any{"name": "fifo"}).ID
	var ep struct{ ID, Ordering string }
	if code := h.do(http.MethodPost, "/v1/apps/"+appID+"/endpoints", map[string]any{"url": recv.URL, "ordering": "fifo"}, &ep); code != http.StatusCreated || ep.Ordering != "fifo" {
		t.Fatalf("create fifo endpoint = %d %+v", code, ep)
	}
	return appID, ep.ID
}

// publishN publishes events numbered from..to, one after the other (each
// committed before the next is written).
func publishN(h *harness, appID string, from, to int) []string {
	var ids []string
	for n := from; n <= to; n++ {
		ids = append(ids, h.mustCreate("/v1/apps/"+appID+"/events", map[string]any{"type": "order.paid", "payload": map[string]any{"n": n}}).ID)
	}
	return ids
}

// TestFIFODeadLetterLetsTheNextGo: a FIFO endpoint's failing head holds
// the events behind it through its retries; once it is dead-lettered the
// next goes. A replay of the dead letter goes on its own, neither waiting
// for the queue nor holding it: here it arrives while the queue's head is
// held by the receiver, and the events after that head still arrive in
// order.
func TestFIFODeadLetterLetsTheNextGo(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{"HOOKD_RETRY_SCHEDULE": "10ms,10ms"})
	var (
		mu      sync.Mutex
		accept2 bool
	)
	hold := make(chan struct{})
	recv := newFIFORecv(t, func(n int, r *http.Request) int {
		mu.Lock()
		ok := n != 2 || accept2
		mu.Unlock()
		if n == 6 {
			select { // the head is held while the dead letter is replayed
			case <-hold:
			case <-r.Context().Done():
			}
		}
		if !ok {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	appID, epID := fifoSetup(t, h, recv)
	publishN(h, appID, 1, 5)
	want := []int{1, 2, 2, 2, 3, 4, 5} // 2: a try and two retries, then a dead letter
	waitFor(t, "events 1-5", func() bool { return len(recv.requests()) >= len(want) })
	if got := recv.requests(); !slices.Equal(got, want) {
		t.Fatalf("requests = %v, want %v", got, want)
	}
	var dl deadLetterPage
	h.do(http.MethodGet, "/v1/dead-letters?endpoint_id="+epID, nil, &dl)
	if len(dl.Data) != 1 {
		t.Fatalf("dead letters = %+v, want the one of event 2", dl.Data)
	}

	publishN(h, appID, 6, 8)
	waitFor(t, "event 6 held", func() bool { return len(recv.requests()) == len(want)+1 })
	mu.Lock()
	accept2 = true
	mu.Unlock()
	if code := h.do(http.MethodPost, "/v1/dead-letters/"+dl.Data[0].DeliveryID+"/retry", nil, nil); code != http.StatusAccepted {
		t.Fatalf("retry the dead letter = %d", code)
	}
	waitFor(t, "the replay of event 2, while 6 is held", func() bool { return len(recv.requests()) == len(want)+2 })
	close(hold)
	waitFor(t, "events 7 and 8", func() bool { return len(recv.requests()) == len(want)+4 })
	if got, tail := recv.requests(), []int{6, 2, 7, 8}; !slices.Equal(got[len(want):], tail) {
		t.Errorf("requests after the dead letter = %v, want %v", got[len(want):], tail)
	}
	if got := h.deliveryStatus(dl.Data[0].DeliveryID); got != "succeeded" {
		t.Errorf("replayed dead letter is %s, want succeeded", got)
	}
}

// TestFIFOPumpRestartedAfterRedisLoss: Redis loses a FIFO endpoint's pump
// (its hash and its task) while the head waits for its retry; the
// reconciler starts it again and every event arrives, in order, one at a
// time.
func TestFIFOPumpRestartedAfterRedisLoss(t *testing.T) {
	t.Parallel()
	h := start(t, map[string]string{
		"HOOKD_RETRY_SCHEDULE":     "2s",
		"HOOKD_RECONCILE_INTERVAL": "200ms",
		"HOOKD_RECONCILE_AFTER":    "1s",
	})
	var (
		mu    sync.Mutex
		tries int
	)
	recv := newFIFORecv(t, func(n int, _ *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		if tries++; tries == 1 {
			return http.StatusServiceUnavailable // the head waits 2s for its retry
		}
		return http.StatusNoContent
	})
	appID, epID := fifoSetup(t, h, recv)
	publishN(h, appID, 1, 5)
	waitFor(t, "the first try", func() bool { return len(recv.requests()) == 1 })

	// The pump waits in Redis as a scheduled task: lose it and its hash.
	prefix := "asynq:{" + h.queues[1] + "}:t:"
	var successor string
	waitFor(t, "the pump's successor scheduled, alone", func() bool {
		keys, _ := h.rdb.Keys(t.Context(), prefix+"fifo:"+epID+":*").Result()
		if len(keys) != 1 {
			return false
		}
		successor = keys[0][len(prefix):]
		return h.rdb.HGet(t.Context(), keys[0], "state").Val() == "scheduled"
	})
	if err := asynq.NewInspectorFromRedisClient(h.rdb).DeleteTask(h.queues[1], successor); err != nil {
		t.Fatalf("delete pump task %s: %v", successor, err)
	}
	if err := h.rdb.Del(t.Context(), "hookd:fifo:"+epID).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "every event", func() bool { return len(recv.requests()) == 6 })
	t.Logf("the reconciler restarted the pump: all delivered %.1fs after the loss", time.Since(start).Seconds())
	if got, want := recv.requests(), []int{1, 1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("requests = %v, want %v", got, want)
	}
	if recv.maxInFlight > 1 {
		t.Errorf("%d requests at once, want 1", recv.maxInFlight)
	}
}

// TestFIFOOrderingSetAtCreation: ordering is shown on the endpoint, an
// unknown ordering is a 422 naming the field, and a PATCH cannot change
// it.
func TestFIFOOrderingSetAtCreation(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	appID := h.mustCreate("/v1/apps", map[string]any{"name": "fifo"}).ID
	var ep struct{ ID, Ordering string }
	if code := h.do(http.MethodPost, "/v1/apps/"+appID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/x"}, &ep); code != http.StatusCreated || ep.Ordering != "unordered" {
		t.Fatalf("default ordering = %d %+v, want unordered", code, ep)
	}
	code, p, _ := h.raw(http.MethodPost, "/v1/apps/"+appID+"/endpoints", "Bearer "+adminKey, "application/json", `{"url":"http://127.0.0.1:9/x","ordering":"lifo"}`)
	if code != http.StatusUnprocessableEntity {
		t.Errorf("ordering lifo = %d %v, want 422", code, p)
	}
	code, p, _ = h.raw(http.MethodPatch, "/v1/apps/"+appID+"/endpoints/"+ep.ID, "Bearer "+adminKey, "application/json", `{"ordering":"fifo"}`)
	if code != http.StatusUnprocessableEntity {
		t.Errorf("PATCH ordering = %d %v, want 422", code, p)
	}
	h.do(http.MethodGet, "/v1/apps/"+appID+"/endpoints/"+ep.ID, nil, &ep)
	if ep.Ordering != "unordered" {
		t.Errorf("ordering after PATCH = %q", ep.Ordering)
	}
}
