package signature_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/hookd/hookd/tasks/signature"
)

func BenchmarkHeader(b *testing.B) {
	key, _ := signature.ParseSecret(signature.NewSecret())
	keys := [][]byte{key}
	body := bytes.Repeat([]byte("x"), 1024)
	now := time.Now()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		signature.Header(keys, "evt_01jdx3q6m2v7k9c8r5t4w3y2z1", now, body)
	}
}
