package outbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/outbox/outboxtest"
)

// TestPayloadStoredAsPublished: the outbox returns every payload byte for
// byte as it was published, through a transaction and through the batcher:
// escapes (a NUL among them), HTML characters, line separators, non-ASCII
// characters and insignificant whitespace are neither rewritten nor added.
func TestPayloadStoredAsPublished(t *testing.T) {
	t.Parallel()
	db := outboxtest.DB(t)
	payloads := map[string]string{
		"NULEscape":        `{"s":"a\u0000b"}`,
		"EscapedBackslash": `{"s":"\\u0000","t":"\\\u0000"}`,
		"HTML":             `{"s":"<a href=\"x\">&amp;</a>","e":"\u003c\u0026\u003e"}`,
		"LineSeparators":   "{\"s\":\"\u2028\u2029\",\"e\":\"\\u2028\"}",
		"NonASCII":         `{"s":"żółw 🐢","e":"\ud83d\udc22\/"}`,
		"Whitespace":       "{ \"a\" : [ 1 , 2 ],\n\t\"b\" : null }",
		"Quotes":           `{"s":"it's ''quoted''","k'":"\""}`,
	}
	check := func(t *testing.T, name string, m *outbox.Message) {
		t.Helper()
		got, err := outbox.Get(t.Context(), db, []string{m.ID})
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: get: %v, %d rows", name, err, len(got))
		}
		if string(got[0].Payload) != payloads[name] {
			t.Errorf("%s: stored %s, want %s", name, got[0].Payload, payloads[name])
		}
	}

	t.Run("Publish", func(t *testing.T) {
		t.Parallel()
		for name, p := range payloads {
			m := &outbox.Message{Tenant: "app_1", Topic: "t", Payload: []byte(p)}
			err := db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
				return outbox.Publish(ctx, tx, m)
			})
			if err != nil {
				t.Fatalf("%s: publish: %v", name, err)
			}
			check(t, name, m)
		}
	})

	t.Run("Batcher", func(t *testing.T) {
		t.Parallel()
		b := outbox.NewBatcher(db, 0)
		msgs := map[string]*outbox.Message{}
		all := make([]*outbox.Message, 0, len(payloads))
		for name, p := range payloads {
			msgs[name] = &outbox.Message{Tenant: "app_1", Topic: "t", Payload: []byte(p)}
			all = append(all, msgs[name])
		}
		if err := b.Publish(t.Context(), all...); err != nil {
			t.Fatalf("publish: %v", err)
		}
		for name, m := range msgs {
			check(t, name, m)
		}
	})

	t.Run("InvalidUTF8Refused", func(t *testing.T) {
		t.Parallel()
		m := &outbox.Message{Tenant: "app_1", Topic: "t", Payload: []byte("{\"s\":\"\xff\"}")}
		err := db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
			return outbox.Publish(ctx, tx, m)
		})
		if !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Errorf("publish of invalid UTF-8 = %v, want ErrInvalidMessage", err)
		}
	})
}
