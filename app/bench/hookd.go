package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// adminKey is the throwaway admin API key of the bench's hookd.
const adminKey = "bench-admin-key-0123456789"

// hookd is the hookd process under test.
type hookd struct {
	cmd     *exec.Cmd
	api     string // base URL
	metrics string // base URL
	client  *http.Client
	log     *slog.Logger

	stopOnce sync.Once
	stopErr  error
	exited   chan struct{}
	tail     *tail
}

// startHookd runs `hookd serve` with every role, on ports of its choosing,
// and waits until its API and metrics servers listen.
func startHookd(ctx context.Context, binary string, env []string, log *slog.Logger) (*hookd, error) {
	cmd := exec.Command(binary, "serve", "--http-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0")
	cmd.Env = append(os.Environ(), "HOOKD_ADMIN_API_KEY="+adminKey, "HOOKD_ALLOW_PRIVATE_TARGETS=true")
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	h := &hookd{
		cmd: cmd, log: log, exited: make(chan struct{}), tail: &tail{},
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
		},
	}
	addrs := make(chan [2]string, 4)
	go func() {
		defer close(h.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Server, Addr, Level string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addrs <- [2]string{line.Server, "http://" + line.Addr}
			}
			h.tail.add(sc.Text())
			if line.Level == "WARN" || line.Level == "ERROR" {
				log.WarnContext(ctx, "hookd: "+sc.Text())
			}
		}
		_ = cmd.Wait()
	}()
	deadline := time.After(60 * time.Second)
	for h.api == "" || h.metrics == "" {
		select {
		case a := <-addrs:
			switch a[0] {
			case "api":
				h.api = a[1]
			case "metrics":
				h.metrics = a[1]
			}
		case <-h.exited:
			return nil, fmt.Errorf("hookd exited at start:\n%s", h.tail)
		case <-deadline:
			h.Stop()
			return nil, fmt.Errorf("hookd did not listen within 60s:\n%s", h.tail)
		case <-ctx.Done():
			h.Stop()
			return nil, ctx.Err()
		}
	}
	return h, nil
}

// Stop sends SIGTERM and waits for hookd to exit (SIGKILL after 30s).
func (h *hookd) Stop() error {
	h.stopOnce.Do(func() {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(30 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.exited
			h.stopErr = errors.New("killed 30s after SIGTERM")
			return
		}
		if st := h.cmd.ProcessState; st != nil && !st.Success() {
			h.stopErr = fmt.Errorf("exited with %s:\n%s", st, h.tail)
		}
	})
	return h.stopErr
}

// post sends a JSON request to hookd's API with the admin key and decodes
// the response into out; any status but want is an error.
func (h *hookd) post(ctx context.Context, path string, in any, want int, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return h.do(ctx, http.MethodPost, path, body, want, out)
}

// delete sends a DELETE to hookd's API with the admin key; any status but
// 204 is an error.
func (h *hookd) delete(ctx context.Context, path string) error {
	return h.do(ctx, http.MethodDelete, path, nil, http.StatusNoContent, nil)
}

func (h *hookd) do(ctx context.Context, method, path string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, h.api+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// usage is a process's CPU time and memory.
type usage struct {
	CPU time.Duration
	RSS int64 // bytes
	// Start is when the process started, in clock ticks after boot: with
	// the pid, it names the process.
	Start int64
}

// clockTicks is Linux's USER_HZ, the unit of /proc/*/stat's CPU times.
const clockTicks = 100

// usage reads hookd's CPU time and resident set size from /proc.
func (h *hookd) usage() (usage, error) {
	return procUsage(h.cmd.Process.Pid)
}

func procUsage(pid int) (usage, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return usage{}, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15, starttime 22, rss 24
	// (in pages).
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 22 {
		return usage{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	start, _ := strconv.ParseInt(f[19], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return usage{
		CPU:   time.Duration(utime+stime) * time.Second / clockTicks,
		RSS:   rss * int64(os.Getpagesize()),
		Start: start,
	}, nil
}

// sampleIntervalDefault is how often a scenario samples hookd's RSS.
const sampleIntervalDefault = 100 * time.Millisecond

// sampler follows hookd's usage during a scenario: CPU time spent and the
// highest RSS seen, sampled every interval.
type sampler struct {
	h       *hookd
	start   usage
	peakRSS int64
	stop    chan struct{}
	done    chan struct{}
}

func (h *hookd) sample(interval time.Duration) *sampler {
	s := &sampler{h: h, stop: make(chan struct{}), done: make(chan struct{})}
	s.start, _ = h.usage()
	s.peakRSS = s.start.RSS
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				if u, err := h.usage(); err == nil {
					s.peakRSS = max(s.peakRSS, u.RSS)
				}
			}
		}
	}()
	return s
}

// end stops sampling and returns hookd's CPU seconds and peak RSS.
func (s *sampler) end() (cpu time.Duration, peakRSS int64) {
	close(s.stop)
	<-s.done
	u, err := s.h.usage()
	if err != nil {
		return 0, s.peakRSS
	}
	return u.CPU - s.start.CPU, max(s.peakRSS, u.RSS)
}

// profile fetches a CPU profile of d and a heap profile from hookd's
// metrics server into dir.
func (h *hookd) profile(ctx context.Context, dir string, d time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range []struct{ path, file string }{
		{fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), "cpu.pprof"},
		{"/debug/pprof/heap", "heap.pprof"},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.metrics+p.path, nil)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", p.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("fetch %s: %d %v", p.path, resp.StatusCode, err)
		}
		if err := os.WriteFile(filepath.Join(dir, p.file), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// tail keeps hookd's last log lines, for errors.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > 20 {
		t.lines = t.lines[len(t.lines)-20:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// Machine describes where the run happened.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model,omitempty"`
	Memory string `json:"memory,omitempty"`
	Go     string `json:"go"`
	OS     string `json:"os"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return m
}
