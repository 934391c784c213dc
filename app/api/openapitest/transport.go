package openapitest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// ReportFunc reports whether the response to req is to be checked against
// the document, e.g. false for undocumented non-API paths such as /r/{code}
// redirects.
type ReportFunc func(req *http.Request) bool

// Transport returns an http.RoundTripper that sends through base
// (http.DefaultTransport when nil) and calls t.Errorf for every response
// CheckResponse refuses. It reads each checked body in full and restores it,
// so callers can still read it; streaming responses are therefore buffered.
// Responses to requests for which report returns false are neither read nor
// checked; a nil report checks every response.
func (d *Doc) Transport(t testing.TB, base http.RoundTripper, report ReportFunc) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{doc: d, t: t, base: base, report: report}
}

type transport struct {
	doc    *Doc
	t      testing.TB
	base   http.RoundTripper
	report ReportFunc
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := tr.base.RoundTrip(req)
	if err != nil || tr.report != nil && !tr.report(req) {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read response body of %s %s: %w", req.Method, req.URL, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := tr.doc.CheckResponse(req.Method, req.URL.Path, resp.StatusCode, resp.Header, body); err != nil {
		tr.t.Errorf("openapitest: response to %s %s disagrees with the document: %v", req.Method, req.URL.RequestURI(), err)
	}
	return resp, nil
}
