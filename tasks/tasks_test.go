package tasks

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hookd/hookd/outbox"
)

// TestFanoutPayloadKeepsData: a fan-out task carries its event's payload
// as the outbox holds it (less insignificant whitespace), so that the
// fan-out encodes the body a worker would load from the outbox.
func TestFanoutPayloadKeepsData(t *testing.T) {
	t.Parallel()
	data := "{\"html\":\"<a>&amp;</a>\",\"ls\":\"\u2028\",\"nul\":\"a\\u0000b\",\"esc\":\"\\u003c\"}"
	m := outbox.Message{ID: "evt_1", Tenant: "app_1", Topic: "order.paid", Payload: []byte(data), CreatedAt: time.Now()}
	b, err := encodeFanout(m)
	if err != nil {
		t.Fatal(err)
	}
	var p FanoutPayload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if string(p.Data) != data {
		t.Errorf("fan-out task data = %s, want %s", p.Data, data)
	}
}
