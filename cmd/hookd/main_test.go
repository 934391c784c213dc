package main_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookd/hookd/outbox/outboxtest"
)

// redisDB is this package's own logical Redis database.
const redisDB = 3

// build compiles hookd into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hookd")
	out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestVersionAndBadConfig(t *testing.T) {
	t.Parallel()
	bin := build(t)

	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "hookd ") {
		t.Errorf("hookd version = %q, %v", out, err)
	}

	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "HOOKD_ALLOW_PRIVATE_TARGETS=perhaps")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Errorf("serve with bad config: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), "HOOKD_ALLOW_PRIVATE_TARGETS") {
		t.Errorf("error does not name the variable: %s", stderr.String())
	}

	// A short admin key is refused before anything starts. Should it not
	// be, the unreachable database makes hookd exit all the same.
	const shortKey = "8charkey"
	cmd = exec.Command(bin, "serve", "--http-addr=127.0.0.1:0", "--metrics-addr=off")
	cmd.Env = append(os.Environ(),
		"HOOKD_ADMIN_API_KEY="+shortKey,
		"HOOKD_DATABASE_URL=postgres://hookd@127.0.0.1:1/hookd?sslmode=disable",
		"HOOKD_REDIS_URL=redis://127.0.0.1:1/0",
	)
	stderr.Reset()
	cmd.Stderr = &stderr
	err = cmd.Run()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Errorf("serve with an 8-character admin key: %v, want exit status 1", err)
	}
	if got := stderr.String(); !strings.Contains(got, "HOOKD_ADMIN_API_KEY") || !strings.Contains(got, "at least 24 characters") || strings.Contains(got, shortKey) {
		t.Errorf("serve with an 8-character admin key said %q, want an error naming HOOKD_ADMIN_API_KEY and its minimum, without the key", got)
	}
}

// TestServe runs the real binary through the README walk-through: create an
// app, an endpoint and a link, click it, and receive a verified webhook;
// then SIGTERM must stop it cleanly.
func TestServe(t *testing.T) {
	t.Parallel()
	bin := build(t)
	dbURL := outboxtest.SchemaURL(t)
	redisURL, _ := url.Parse(cmp.Or(os.Getenv("HOOKD_TEST_REDIS_URL"), "redis://127.0.0.1:6379"))
	redisURL.Path = fmt.Sprintf("/%d", redisDB)
	opt, _ := redis.ParseURL(redisURL.String())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.FlushDB(t.Context()).Err(); err != nil {
		t.Fatalf("redis unreachable at %s: %v", redisURL, err)
	}

	var (
		mu       sync.Mutex
		received []*http.Request
		bodies   [][]byte
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		received, bodies = append(received, r), append(bodies, b)
		mu.Unlock()
	}))
	defer recv.Close()

	const key = "binary-test-key-0123456789"
	cmd := exec.Command(bin, "serve", "--http-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0")
	cmd.Env = append(os.Environ(),
		"HOOKD_DATABASE_URL="+dbURL,
		"HOOKD_REDIS_URL="+redisURL.String(),
		"HOOKD_ADMIN_API_KEY="+key,
		"HOOKD_ALLOW_PRIVATE_TARGETS=true",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Find the API address in the logs; keep draining them into the test log
	// until the process is gone.
	addrc := make(chan string, 1)
	scanned := make(chan struct{})
	defer func() {
		_ = cmd.Process.Kill()
		<-scanned
	}()
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Server, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" && line.Server == "api" {
				addrc <- line.Addr
			}
			if !strings.Contains(sc.Text(), `"level":"INFO"`) {
				t.Log(sc.Text())
			}
		}
	}()
	var base string
	select {
	case addr := <-addrc:
		base = "http://" + addr
	case <-time.After(30 * time.Second):
		t.Fatal("hookd did not start listening")
	}

	post := func(path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s = %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	appID := post("/v1/apps", `{"name":"acme"}`)["id"].(string)
	secret := post("/v1/apps/"+appID+"/endpoints", `{"url":"`+recv.URL+`/hook","event_types":["link.clicked"]}`)["secret"].(string)
	code := post("/v1/apps/"+appID+"/links", `{"url":"https://example.com"}`)["code"].(string)

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/r/" + code)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET /r/%s = %d, want 302", code, resp.StatusCode)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no webhook received")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wh, _ := standardwebhooks.NewWebhook(secret)
	mu.Lock()
	if err := wh.Verify(bodies[0], received[0].Header); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if ua := received[0].Header.Get("User-Agent"); !strings.HasPrefix(ua, "hookd/") {
		t.Errorf("User-Agent = %q", ua)
	}
	mu.Unlock()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		<-scanned // read all of stderr before Wait closes the pipe
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("hookd exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("hookd did not stop within 30s of SIGTERM")
	}
}
