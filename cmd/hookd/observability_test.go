package main_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hookd/hookd/outbox/outboxtest"
)

// observabilityRedisDB is TestPrometheusEvaluatesDashboardAndAlerts' own
// logical Redis database: its queue gauges must count only its own tasks.
const observabilityRedisDB = 6

// repoRoot is the module root; tests run in cmd/hookd.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from %s: %v", root, err)
	}
	return root
}

// promInstall runs deploy/prometheus.sh at most once per test binary.
var promInstall struct {
	once sync.Once
	out  []byte
	err  error
}

// prometheusTools returns the paths of prometheus and promtool, installing
// them with deploy/prometheus.sh when missing (not under -short, which
// must not touch the machine). It skips the test only when they are
// missing and cannot be installed.
func prometheusTools(t *testing.T) (prometheus, promtool string) {
	t.Helper()
	look := func() (string, string, error) {
		p, err := exec.LookPath("prometheus")
		if err != nil {
			return "", "", err
		}
		pt, err := exec.LookPath("promtool")
		return p, pt, err
	}
	if p, pt, err := look(); err == nil {
		return p, pt
	}
	if testing.Short() {
		t.Skip("prometheus/promtool not installed (bash deploy/prometheus.sh installs them); -short does not install")
	}
	promInstall.once.Do(func() {
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "deploy", "prometheus.sh"))
		promInstall.out, promInstall.err = cmd.CombinedOutput()
	})
	if promInstall.err != nil {
		t.Skipf("prometheus/promtool are not installed and deploy/prometheus.sh could not install them: %v\n%s",
			promInstall.err, promInstall.out)
	}
	p, pt, err := look()
	if err != nil {
		t.Fatalf("deploy/prometheus.sh succeeded but %v\n%s", err, promInstall.out)
	}
	return p, pt
}

// githubSlug is the anchor GitHub gives a Markdown heading.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestPromtoolChecks validates deploy/prometheus with promtool: the config
// (and through it the rule files it names), the rules, and the rules' unit
// tests; and checks that every alert's runbook link has its section in
// deploy/RUNBOOK.md.
func TestPromtoolChecks(t *testing.T) {
	t.Parallel()
	_, promtool := prometheusTools(t)
	root := repoRoot(t)

	for _, args := range [][]string{
		{"check", "config", "deploy/prometheus/prometheus.yml"},
		{"check", "rules", "deploy/prometheus/alerts.yml"},
		{"test", "rules", "deploy/prometheus/alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}

	rules, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	runbook, err := os.ReadFile(filepath.Join(root, "deploy", "RUNBOOK.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(runbook), -1) {
		anchors[githubSlug(m[1])] = true
	}
	names := regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)\s*$`).FindAllStringSubmatch(string(rules), -1)
	links := regexp.MustCompile(`(?m)^\s*runbook_url:\s*"?([^"\s]+)"?\s*$`).FindAllStringSubmatch(string(rules), -1)
	if len(names) == 0 || len(names) != len(links) {
		t.Fatalf("alerts.yml has %d alerts and %d runbook_url annotations, want one each", len(names), len(links))
	}
	for i, n := range names {
		want := "runbook-" + strings.ToLower(n[1])
		_, anchor, _ := strings.Cut(links[i][1], "#")
		if anchor != want {
			t.Errorf("alert %s: runbook_url %s, want anchor #%s", n[1], links[i][1], want)
		}
		if !anchors[want] {
			t.Errorf("alert %s: deploy/RUNBOOK.md has no heading with anchor #%s", n[1], want)
		}
	}
}

// childProcess is a running command whose stderr lines go to onLine; the
// test's cleanup stops it.
type childProcess struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once stderr is drained and the process reaped
	err  error         // Wait's result, once done is closed
}

func startChild(t *testing.T, name string, cmd *exec.Cmd, onLine func(string)) *childProcess {
	t.Helper()
	p := &childProcess{name: name, cmd: cmd, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			onLine(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
	}()
	t.Cleanup(func() { p.terminate(t, 10*time.Second) })
	return p
}

// terminate sends SIGTERM, waits up to grace for the process to exit, then
// kills it. It reports whether the process exited on its own.
func (p *childProcess) terminate(t *testing.T, grace time.Duration) bool {
	t.Helper()
	select {
	case <-p.done:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
	}
	t.Logf("%s did not stop within %s of SIGTERM; killing it", p.name, grace)
	_ = p.cmd.Process.Kill()
	<-p.done
	return false
}

// promAPI queries a Prometheus server's HTTP API.
type promAPI struct{ base string }

// promSample is one element of an instant vector (or a scalar).
type promSample struct {
	Metric map[string]string
	Value  float64
}

// query evaluates expr at the current time. It returns Prometheus' error
// for an expression that does not parse or evaluate.
func (p promAPI) query(expr string) ([]promSample, error) {
	resp, err := http.PostForm(p.base+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status, ErrorType, Error string
		Data                     struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode response (HTTP %d): %w", resp.StatusCode, err)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("status %q: %s: %s", out.Status, out.ErrorType, out.Error)
	}
	parse := func(v [2]any) (float64, error) {
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64) // accepts NaN, +Inf, -Inf
	}
	switch out.Data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(out.Data.Result, &vec); err != nil {
			return nil, err
		}
		samples := make([]promSample, len(vec))
		for i, s := range vec {
			v, err := parse(s.Value)
			if err != nil {
				return nil, err
			}
			samples[i] = promSample{s.Metric, v}
		}
		return samples, nil
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(out.Data.Result, &s); err != nil {
			return nil, err
		}
		v, err := parse(s)
		return []promSample{{nil, v}}, err
	}
	return nil, fmt.Errorf("result type %q, want vector or scalar", out.Data.ResultType)
}

// value returns the single value expr evaluates to, or NaN when it has none.
func (p promAPI) value(expr string) float64 {
	s, err := p.query(expr)
	if err != nil || len(s) != 1 {
		return math.NaN()
	}
	return s[0].Value
}

// alertRule is an alerting rule as Prometheus loaded it (/api/v1/rules).
type alertRule struct {
	Name        string            `json:"name"`
	Query       string            `json:"query"`
	Duration    float64           `json:"duration"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Health      string            `json:"health"`
	LastError   string            `json:"lastError"`
	Type        string            `json:"type"`
}

func (p promAPI) rules() ([]alertRule, error) {
	resp, err := http.Get(p.base + "/api/v1/rules?type=alert")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string
		Data   struct {
			Groups []struct {
				Rules []alertRule `json:"rules"`
			} `json:"groups"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("GET /api/v1/rules: status %q", out.Status)
	}
	var rules []alertRule
	for _, g := range out.Data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}

// dashboardPanel is the part of a Grafana panel the test reads. Rows carry
// their panels in Panels when collapsed.
type dashboardPanel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// dashboardQuery is one PromQL query of a dashboard panel, with Grafana's
// variables replaced.
type dashboardQuery struct{ panel, refID, expr string }

// grafanaVariables replaces Grafana's built-in variables with what they
// would be on a short dashboard range (longest names first).
var grafanaVariables = strings.NewReplacer(
	"${__rate_interval}", "1m", "$__rate_interval", "1m",
	"${__interval_ms}", "15000", "$__interval_ms", "15000",
	"${__interval}", "15s", "$__interval", "15s",
	"${__range_s}", "300", "$__range_s", "300",
	"${__range}", "5m", "$__range", "5m",
)

// dashboardQueries returns every query of the dashboard at path, checking
// that each panel has queries and uses the datasource variable.
func dashboardQueries(t *testing.T, path string) []dashboardQuery {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	hasVar := false
	for _, v := range d.Templating.List {
		hasVar = hasVar || (v.Name == "datasource" && v.Type == "datasource")
	}
	if !hasVar {
		t.Errorf("%s: no datasource variable named datasource", path)
	}
	const dsUID = "${datasource}"
	var queries []dashboardQuery
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsUID {
				t.Errorf("panel %q: datasource is not %s", p.Title, dsUID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != dsUID {
					t.Errorf("panel %q query %s: datasource is %q, not %s", p.Title, tg.RefID, tg.Datasource.UID, dsUID)
				}
				expr := grafanaVariables.Replace(tg.Expr)
				if strings.TrimSpace(expr) == "" || strings.Contains(expr, "$") {
					t.Errorf("panel %q query %s: empty or unknown variable in %q", p.Title, tg.RefID, tg.Expr)
					continue
				}
				queries = append(queries, dashboardQuery{p.Title, tg.RefID, expr})
			}
		}
	}
	walk(d.Panels)
	return queries
}

// TestPrometheusEvaluatesDashboardAndAlerts runs the real hookd under load
// and a real Prometheus scraping it with the rules of
// deploy/prometheus/alerts.yml, then evaluates every query of the Grafana
// dashboard and every alert expression: each must be valid PromQL, and
// each dashboard query must return data.
func TestPrometheusEvaluatesDashboardAndAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres, Redis and Prometheus; skipped with -short")
	}
	t.Parallel()
	prometheusBin, _ := prometheusTools(t)
	root := repoRoot(t)
	queries := dashboardQueries(t, filepath.Join(root, "deploy", "grafana", "dashboards", "hookd.json"))
	rulesFile, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	bin := build(t)
	start := time.Now()
	deadline := start.Add(2 * time.Minute) // the whole run after the build, beside the fault suite
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s", time.Since(start).Round(time.Millisecond), what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	dbURL := outboxtest.SchemaURL(t)
	redisURL, _ := url.Parse(cmp.Or(os.Getenv("HOOKD_TEST_REDIS_URL"), "redis://127.0.0.1:6379"))
	redisURL.Path = fmt.Sprintf("/%d", observabilityRedisDB)
	opt, _ := redis.ParseURL(redisURL.String())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.FlushDB(t.Context()).Err(); err != nil {
		t.Fatalf("redis unreachable at %s: %v", redisURL.Redacted(), err)
	}

	// Receivers. "ok" events succeed, "flaky" ones fail their first attempt,
	// "fail" ones always fail (with one retry, they become dead letters);
	// the gone receiver answers 410, which disables its endpoint.
	var (
		mu   sync.Mutex
		seen = map[string]int{} // webhook-id -> attempts
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Data struct{ Mode string } `json:"data"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		n := seen[r.Header.Get("webhook-id")]
		mu.Unlock()
		switch {
		case body.Data.Mode == "fail", body.Data.Mode == "flaky" && n == 1:
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer recv.Close()
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusGone)
	}))
	defer gone.Close()

	// hookd, every role, on ports of its choosing: the logs tell which.
	const key = "observability-test-key-01"
	addrs := make(chan [2]string, 4)
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"HOOKD_DATABASE_URL="+dbURL,
		"HOOKD_REDIS_URL="+redisURL.String(),
		"HOOKD_ADMIN_API_KEY="+key,
		"HOOKD_ALLOW_PRIVATE_TARGETS=true",
		"HOOKD_ROLES=api,relay,worker",
		"HOOKD_HTTP_ADDR=127.0.0.1:0",
		"HOOKD_METRICS_ADDR=127.0.0.1:0",
		"HOOKD_RETRY_SCHEDULE=10ms",
		"HOOKD_CIRCUIT_THRESHOLD=1000", // failures must reach dead letters, not wait in an open circuit
		"HOOKD_DELIVERY_TIMEOUT=5s",
		"HOOKD_SHUTDOWN_TIMEOUT=5s",
	)
	hookd := startChild(t, "hookd", cmd, func(line string) {
		var l struct{ Msg, Server, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
			addrs <- [2]string{l.Server, l.Addr}
		}
		if !strings.Contains(line, `"level":"INFO"`) {
			t.Logf("hookd: %s", line)
		}
	})
	var apiAddr, metricsAddr string
	for apiAddr == "" || metricsAddr == "" {
		select {
		case a := <-addrs:
			switch a[0] {
			case "api":
				apiAddr = a[1]
			case "metrics":
				metricsAddr = a[1]
			}
		case <-hookd.done:
			t.Fatalf("hookd exited: %v", hookd.err)
		case <-time.After(time.Until(deadline)):
			t.Fatal("hookd did not start listening")
		}
	}
	base := "http://" + apiAddr

	// Prometheus scraping hookd every second, with the rules of alerts.yml.
	promDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(promDir, "alerts.yml"), rulesFile, 0o644); err != nil {
		t.Fatal(err)
	}
	promConfig := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: hookd
    static_configs:
      - targets: [%q]
`, metricsAddr)
	if err := os.WriteFile(filepath.Join(promDir, "prometheus.yml"), []byte(promConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	var prom promAPI
	for attempt := 1; prom.base == ""; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listen := ln.Addr().String()
		_ = ln.Close()
		var logs bytes.Buffer
		var logsMu sync.Mutex
		p := startChild(t, "prometheus", exec.Command(prometheusBin,
			"--config.file="+filepath.Join(promDir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(promDir, fmt.Sprintf("data%d", attempt)),
			"--web.listen-address="+listen,
			"--log.level=warn",
		), func(line string) {
			logsMu.Lock()
			logs.WriteString(line + "\n")
			logsMu.Unlock()
			t.Logf("prometheus: %s", line)
		})
		ready := func() bool {
			resp, err := http.Get("http://" + listen + "/-/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		exited := func() bool {
			select {
			case <-p.done:
				return true
			default:
				return false
			}
		}
		for !ready() && !exited() {
			if time.Now().After(deadline) {
				t.Fatal("prometheus did not become ready")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if exited() {
			logsMu.Lock()
			inUse := strings.Contains(logs.String(), "address already in use")
			logsMu.Unlock()
			if !inUse || attempt == 3 {
				t.Fatalf("prometheus exited: %v", p.err)
			}
			continue // the port was taken meanwhile: another one
		}
		prom.base = "http://" + listen
	}
	waitUntil("Prometheus to scrape hookd", func() bool { return prom.value(`up{job="hookd"}`) == 1 })

	// Load: an app, two endpoints, 50 events to the receiver and one to the
	// gone endpoint, then a replay of a dead letter.
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %v, want %d", method, path, resp.StatusCode, out, want)
		}
		return out
	}
	appID := call("POST", "/v1/apps", `{"name":"observed"}`, http.StatusCreated)["id"].(string)
	epID := call("POST", "/v1/apps/"+appID+"/endpoints",
		`{"url":"`+recv.URL+`/hook","event_types":["order.updated"]}`, http.StatusCreated)["id"].(string)
	call("POST", "/v1/apps/"+appID+"/endpoints",
		`{"url":"`+gone.URL+`/hook","event_types":["order.deleted"]}`, http.StatusCreated)
	// The events are spread over a few scrapes: a labelled series appears
	// with its first increment, and rate() sees only the increases after a
	// series' first sample, so a burst within one scrape interval would show
	// a rate of 0 for the series it creates.
	const events = 50
	fails := 0
	for i := range events {
		time.Sleep(60 * time.Millisecond)
		mode := "ok"
		switch {
		case i%10 == 0:
			mode = "fail"
			fails++
		case i%4 == 1:
			mode = "flaky"
		}
		call("POST", "/v1/apps/"+appID+"/events",
			fmt.Sprintf(`{"type":"order.updated","payload":{"n":%d,"mode":%q}}`, i, mode), http.StatusCreated)
	}
	call("POST", "/v1/apps/"+appID+"/events", `{"type":"order.deleted","payload":{"n":0}}`, http.StatusCreated)
	call("GET", "/v1/apps/app_00000000000000000000000000", "", http.StatusNotFound) // a 4xx for the API panels

	waitUntil("every delivery to succeed or become a dead letter (as Prometheus sees it)", func() bool {
		return prom.value(`sum(hookd_delivery_attempts_total{outcome="success"})`) >= events-float64(fails) &&
			prom.value(`sum(hookd_dead_letters_total)`) >= float64(fails+1) &&
			prom.value(`sum(hookd_endpoints_disabled_total{reason="gone"})`) >= 1
	})
	list := call("GET", "/v1/dead-letters?endpoint_id="+epID, "", http.StatusOK)
	data, _ := list["data"].([]any)
	if len(data) == 0 {
		t.Fatalf("GET /v1/dead-letters?endpoint_id=%s listed none: %v", epID, list)
	}
	dlv := data[0].(map[string]any)["delivery_id"].(string)
	call("POST", "/v1/dead-letters/"+dlv+"/retry", "", http.StatusAccepted)
	waitUntil("the replay to be scraped", func() bool {
		return prom.value(`sum(hookd_dead_letters_replayed_total)`) >= 1 &&
			prom.value(`sum(hookd_dead_letters_total)`) >= float64(fails+2) // the replay failed again
	})
	// Every dashboard query parses and returns data. Data may need a scrape
	// or two more to reach every rate() window: failures are retried for a
	// few seconds before they are reported.
	type failure struct {
		q   dashboardQuery
		why string
	}
	var failures []failure
	rounds := 0
	retryUntil := time.Now().Add(10 * time.Second)
	if retryUntil.After(deadline) {
		retryUntil = deadline
	}
	for {
		rounds++
		failures = failures[:0]
		for _, q := range queries {
			samples, err := prom.query(q.expr)
			switch {
			case err != nil:
				failures = append(failures, failure{q, err.Error()})
			case len(samples) == 0:
				failures = append(failures, failure{q, "no data"})
			case !anyFinite(samples):
				failures = append(failures, failure{q, fmt.Sprintf("only NaN or Inf (%d series)", len(samples))})
			}
		}
		if len(failures) == 0 || time.Now().After(retryUntil) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, f := range failures {
		t.Errorf("panel %q query %s: %s\n%s", f.q.panel, f.q.refID, f.why, f.q.expr)
	}

	// Every alert, as Prometheus loaded it from alerts.yml: evaluated
	// without error by the rule manager, and its expression valid PromQL.
	wantRules := len(regexp.MustCompile(`(?m)^\s*- alert:`).FindAll(rulesFile, -1))
	var rules []alertRule
	waitUntil("Prometheus to evaluate every alert rule", func() bool {
		rules, err = prom.rules()
		if err != nil || len(rules) != wantRules {
			return false
		}
		for _, r := range rules {
			if r.Health == "unknown" {
				return false
			}
		}
		return true
	})
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("alert %s: health %q: %s", r.Name, r.Health, r.LastError)
		}
		if _, err := prom.query(r.Query); err != nil {
			t.Errorf("alert %s: %v\n%s", r.Name, err, r.Query)
		}
		if r.Duration <= 0 {
			t.Errorf("alert %s has no for:", r.Name)
		}
		if r.Labels["severity"] == "" {
			t.Errorf("alert %s has no severity label", r.Name)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("alert %s has no %s annotation", r.Name, a)
			}
		}
	}
	t.Logf("evaluated %d dashboard queries (%d rounds) and %d alert expressions in %s after the build",
		len(queries), rounds, len(rules), time.Since(start).Round(time.Millisecond))

	hookd.terminate(t, 10*time.Second)
	if hookd.err != nil {
		t.Errorf("hookd exited with %v after SIGTERM, want status 0", hookd.err)
	}
}

func anyFinite(samples []promSample) bool {
	for _, s := range samples {
		if !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0) {
			return true
		}
	}
	return false
}
