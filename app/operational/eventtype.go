package operational

import (
	"encoding/json"
	"fmt"

	"github.com/hookd/hookd/app/events"
)

// EventTypes returns the event types of the operational webhooks, with
// their JSON Schemas (draft 2020-12), for the event-type registry. The
// schemas require what every event carries and allow fields added later.
func EventTypes() []events.EventTypeInput {
	id := func(prefix string) string {
		return fmt.Sprintf(`{"type":"string","pattern":"^%s_[0-9a-z]{26}$"}`, prefix)
	}
	const (
		timestamp  = `{"type":"string","format":"date-time"}`
		optionalTS = `{"type":["string","null"],"format":"date-time"}`
		text       = `{"type":"string","maxLength":2000}`
	)
	endpoint := func(required []string, props map[string]string) json.RawMessage {
		all := map[string]string{"app_id": id("app"), "endpoint_id": id("ep"), "failing_since": optionalTS}
		for k, v := range props {
			all[k] = v
		}
		return schema(append([]string{"app_id", "endpoint_id"}, required...), all)
	}
	return []events.EventTypeInput{
		{
			Name: TypeEndpointFailing,
			Description: "An endpoint's failing streak began: its first failed attempt since its last success, its creation or its re-enabling. " +
				"Sent once per streak; reason is what the attempt got.",
			Schema: endpoint([]string{"failing_since", "reason"}, map[string]string{"reason": text}),
		},
		{
			Name:        TypeEndpointRecovered,
			Description: "A successful attempt ended an endpoint's failing streak. Sent once per streak.",
			Schema:      endpoint([]string{"failing_since", "recovered_at"}, map[string]string{"recovered_at": timestamp}),
		},
		{
			Name: TypeEndpointDisabled,
			Description: "An endpoint was disabled: by hookd (trigger automatic: it answered 410 Gone, or every attempt failed for HOOKD_ENDPOINT_DISABLE_AFTER) " +
				"or through the API (trigger manual). It receives no new events until enabled again.",
			Schema: endpoint([]string{"trigger", "reason", "disabled_at"}, map[string]string{
				"trigger": `{"enum":["automatic","manual"]}`, "reason": text, "disabled_at": timestamp,
			}),
		},
		{
			Name:        TypeEndpointEnabled,
			Description: "A disabled endpoint was enabled again through the API; failing_since is the streak its enabling ended, if any.",
			Schema:      endpoint([]string{"enabled_at"}, map[string]string{"enabled_at": timestamp}),
		},
		{
			Name: TypeDeliveryExhausted,
			Description: "A delivery failed for good and became a dead letter: its retries are spent, its endpoint answered 410 Gone or is disabled, " +
				"or its event is gone. It can be retried from the dead letters.",
			Schema: schema([]string{"app_id", "endpoint_id", "delivery_id", "event_id", "event_type", "attempts", "last_error", "last_status_code"}, map[string]string{
				"app_id": id("app"), "endpoint_id": id("ep"), "delivery_id": id("dlv"), "event_id": `{"type":"string","minLength":1}`,
				"event_type": `{"type":"string","minLength":1}`, "attempts": `{"type":"integer","minimum":0}`,
				"last_error": `{"type":["string","null"],"maxLength":2000}`, "last_status_code": `{"type":["integer","null"]}`,
			}),
		},
	}
}

// schema is an object schema with properties props, of which required
// must be present.
func schema(required []string, props map[string]string) json.RawMessage {
	ps := make(map[string]json.RawMessage, len(props))
	for k, v := range props {
		ps[k] = json.RawMessage(v)
	}
	b, err := json.Marshal(map[string]any{
		"$schema":    "https://json-schema.org/draft/2020-12/schema",
		"type":       "object",
		"required":   required,
		"properties": ps,
	})
	if err != nil {
		panic(err) // constant input
	}
	return b
}
