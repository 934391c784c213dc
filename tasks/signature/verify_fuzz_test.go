package signature_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookd/hookd/tasks/signature"
)

// FuzzVerifySignatureHeader checks Verify on hostile headers, and
// differentially against the Standard Webhooks Go library.
//
// The inputs are templates: in timestamp, "{ts}" becomes the current unix
// time plus offset seconds; in header, "{sig}" and "{old}" become the base64
// signatures of the message under the verifying key and under another key,
// "{a}" and "{b}" the two halves of "{sig}", "{nc}" a non-canonical text
// of it (non-zero padding bits in its last character), and the header is
// repeated 1+copies times (up to 64 KiB). So the fuzzer works around real
// signatures, and reaches long headers from short inputs: the raw inputs
// stay small, and so do the costs of each run and of minimising (quadratic
// in an input's length).
//
// Verify must never panic, must return nil or one of the package's errors,
// and must accept a header built by signature.Header. Where their contracts
// coincide it must agree with the reference library, which uses the same key,
// time.Now and a 5-minute tolerance. They intentionally differ, and nothing
// is asserted, when:
//   - the timestamp is not canonical decimal (a sign or leading zeros): the
//     library parses it with strconv.ParseInt and signs the canonical form;
//     Verify refuses it (ErrMalformed), as the signed text must be the
//     header's text;
//   - a v1 entry has more fields ("v1,<sig>,x"): the library reads the
//     second field and ignores the rest; Verify skips the entry;
//   - the header is over 4096 bytes or has more than 16 v1 signatures: the
//     library has no limits; Verify refuses it (ErrMalformed);
//   - the timestamp is within a few seconds of the tolerance edge, where the
//     two clocks' readings can fall either side.
func FuzzVerifySignatureHeader(f *testing.F) {
	key, err := signature.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") // the spec's example secret
	if err != nil {
		f.Fatal(err)
	}
	other, err := signature.ParseSecret("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		f.Fatal(err)
	}
	ref, err := standardwebhooks.NewWebhookRaw(key)
	if err != nil {
		f.Fatal(err)
	}
	v := signature.NewVerifier([][]byte{key}, signature.VerifierConfig{})

	body := []byte(`{"type":"link.clicked","data":{}}`)
	// The spec's example: a real signed message, now long out of tolerance.
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", uint16(0), "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", int64(0), []byte(`{"test": 2432232314}`))
	for _, h := range []string{
		"{sig}",
		"{old} {sig}",
		"  {sig}   {old} ",
		"v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= {sig}",
		"v2,{sig} v1,{old}",
		"{sig},x",
		"v1,{sig}\t{old}",
		"v1,{sig}",
		"v1,{a}{b}",
		"v1,{a}\n{b}",
		"v1,{nc}",
		"v1,{nc} {sig}",
		"v1,{a}",
		"",
		" ",
		"v1",
		"v1,",
		"v1,,",
		",",
		"garbage",
		"v1,!!!!",
		"\x00\xff\n\r",
	} {
		f.Add(h, uint16(0), "evt_1", "{ts}", int64(0), body)
	}
	for _, c := range []struct {
		header string
		copies uint16
	}{
		{"{old} ", 15},             // 16 signatures with the next
		{"{old} {sig} ", 8},        // 18 signatures
		{"{sig} ", 90},             // over 4096 bytes
		{"x", 9_999},               // 10,000 bytes of garbage
		{"v1,{sig}{old} ", 65_535}, // capped at 64 KiB
	} {
		f.Add(c.header, c.copies, "evt_1", "{ts}", int64(0), body)
	}
	for _, ts := range []string{"", "x", "+{ts}", "0{ts}", "-{ts}", "{ts}.0", " {ts}", "{ts}{ts}", "99999999999999999999"} {
		f.Add("{sig}", uint16(0), "evt_1", ts, int64(0), body)
	}
	for _, off := range []int64{-300, 300, -301, 301, -1 << 40, 1 << 40} {
		f.Add("{sig}", uint16(0), "evt_1", "{ts}", off, body)
	}
	f.Add("{sig}", uint16(0), "", "{ts}", int64(0), body)
	f.Add("{sig}", uint16(0), "evt.1.2", "{ts}", int64(0), []byte{})

	f.Fuzz(func(t *testing.T, header string, copies uint16, id, timestamp string, offset int64, body []byte) {
		if len(header) > 256 || len(id) > 128 || len(timestamp) > 64 || len(body) > 1024 {
			return
		}
		now := time.Now()
		at := time.Unix(now.Unix()+offset%(1<<40), 0)
		timestamp = strings.ReplaceAll(timestamp, "{ts}", strconv.FormatInt(at.Unix(), 10))
		sig := strings.TrimPrefix(signature.Sign(key, id, at, body), "v1,")
		header = strings.NewReplacer(
			"{sig}", sig,
			"{old}", strings.TrimPrefix(signature.Sign(other, id, at, body), "v1,"),
			"{a}", sig[:22], "{b}", sig[22:], "{nc}", nonCanonical(sig),
		).Replace(header)
		if len(header) > 0 {
			header = strings.Repeat(header, min(1+int(copies), 64<<10/len(header)))
		}

		macs, parseErr := signature.ParseHeader(header)
		switch {
		case parseErr == nil:
			if len(macs) == 0 || len(macs) > 16 {
				t.Fatalf("ParseHeader returned %d MACs", len(macs))
			}
			for _, mac := range macs {
				if len(mac) != 32 {
					t.Fatalf("ParseHeader returned a %d-byte MAC", len(mac))
				}
			}
		case !errors.Is(parseErr, signature.ErrNoSignature) && !errors.Is(parseErr, signature.ErrMalformed):
			t.Fatalf("ParseHeader error %v is none of the package's", parseErr)
		}

		err := v.Verify(id, timestamp, header, body)
		if err != nil && !isSentinel(err) {
			t.Fatalf("Verify error %v is none of the package's", err)
		}
		h := http.Header{}
		h.Set(signature.HeaderID, id)
		h.Set(signature.HeaderTimestamp, timestamp)
		h.Set(signature.HeaderSignature, header)
		refErr := ref.Verify(body, h)

		switch {
		case nearToleranceEdge(timestamp, now):
			// The two readings of the clock can fall either side of the edge.
		case err == nil && refErr != nil:
			t.Fatalf("Verify accepted what the reference refuses (%v): id %q, timestamp %q, header %q", refErr, id, timestamp, header)
		case err != nil && refErr == nil && !knownDifference(timestamp, header, key, id, body, parseErr):
			t.Fatalf("Verify refused (%v) what the reference accepts: id %q, timestamp %q, header %q", err, id, timestamp, header)
		}

		// What hookd sends, signed with two keys as while rotating, always
		// verifies, by both.
		if id == "" {
			return
		}
		sent := signature.Header([][]byte{other, key}, id, now, body)
		unix := strconv.FormatInt(now.Unix(), 10)
		if err := v.Verify(id, unix, sent, body); err != nil {
			t.Fatalf("Verify of signature.Header(%q) = %v", id, err)
		}
		h.Set(signature.HeaderTimestamp, unix)
		h.Set(signature.HeaderSignature, sent)
		if err := ref.Verify(body, h); err != nil {
			t.Fatalf("reference Verify of signature.Header(%q) = %v", id, err)
		}
	})
}

// nonCanonical returns the base64 text of a MAC with the padding bits of
// its last character set: lenient decoders read the same MAC from it.
func nonCanonical(sig string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	return sig[:42] + string(alphabet[strings.IndexByte(alphabet, sig[42])|3]) + sig[43:]
}

// isSentinel reports whether err wraps one of the package's errors.
func isSentinel(err error) bool {
	for _, s := range []error{signature.ErrMalformed, signature.ErrTimestamp, signature.ErrNoSignature, signature.ErrMismatch} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// nearToleranceEdge reports whether timestamp, as the reference library
// reads it, lies within a few seconds of the tolerance edge.
func nearToleranceEdge(timestamp string, now time.Time) bool {
	unix, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	d := now.Sub(time.Unix(unix, 0)).Abs()
	return d > signature.DefaultTolerance-5*time.Second && d < signature.DefaultTolerance+5*time.Second
}

// knownDifference reports whether the reference library may accept a
// message that Verify refuses, for one of the reasons listed on
// FuzzVerifySignatureHeader.
func knownDifference(timestamp, header string, key []byte, id string, body []byte, parseErr error) bool {
	unix, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false // the reference refuses it too
	}
	if timestamp != strconv.FormatInt(unix, 10) {
		return true
	}
	if errors.Is(parseErr, signature.ErrMalformed) {
		return true
	}
	return strings.Contains(" "+header, " "+signature.Sign(key, id, time.Unix(unix, 0), body)+",")
}
