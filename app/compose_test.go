package app_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/redisconn"
)

// composeTestEnv is what the compose files need from the shell that runs
// docker compose.
var composeTestEnv = []string{
	"HOOKD_ADMIN_API_KEY=" + strings.Repeat("k", 32),
	"HOOKD_SECRETS_KEY=" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 32))),
}

// TestComposeFiles loads deploy/compose.yaml alone and with
// deploy/compose.sentinel.yaml as `docker compose config` does, with
// compose-go, Docker Compose's own loader: the compose-spec schema (unknown
// or mistyped keys are refused), interpolation, YAML merges, the override's
// merge into the base file, and the consistency of the project (every
// service depended on exists). Then each hookd service's environment goes
// through hookd's configuration parser: a misspelt variable, a value hookd
// refuses or two Redis modes at once fail the test.
func TestComposeFiles(t *testing.T) {
	t.Parallel()

	for name, tc := range map[string]struct {
		files []string
		mode  redisconn.Mode
	}{
		"Single":   {files: []string{"compose.yaml"}, mode: redisconn.Single},
		"Sentinel": {files: []string{"compose.yaml", "compose.sentinel.yaml"}, mode: redisconn.Sentinel},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, err := loadCompose(t, tc.files, composeTestEnv)
			if err != nil {
				t.Fatal(err)
			}
			checkComposeHookd(t, p, tc.mode)
			if tc.mode == redisconn.Sentinel {
				checkComposeSentinels(t, p)
			}
		})
	}

	t.Run("RefusesMissingAdminKey", func(t *testing.T) {
		t.Parallel()
		_, err := loadCompose(t, []string{"compose.yaml"}, nil)
		if err == nil || !strings.Contains(err.Error(), "HOOKD_ADMIN_API_KEY") {
			t.Errorf("compose.yaml without HOOKD_ADMIN_API_KEY: %v, want an error naming it", err)
		}
	})
}

// loadCompose loads the compose files of deploy/ named in files, the
// first one the base, with env as the shell's environment.
func loadCompose(t *testing.T, files []string, env []string) (*types.Project, error) {
	t.Helper()
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join("..", "deploy", f)
	}
	opts, err := cli.NewProjectOptions(paths, cli.WithEnv(env), cli.WithConsistency(true))
	if err != nil {
		return nil, fmt.Errorf("compose options: %w", err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", strings.Join(files, " + "), err)
	}
	return p, nil
}

// checkComposeHookd checks every service built from the repository's
// Dockerfile: its environment parses, it uses Redis in mode, all of them
// the same Redis and queue shards, Prometheus can scrape them, and between
// them they run every role.
func checkComposeHookd(t *testing.T, p *types.Project, mode redisconn.Mode) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var (
		roles []string
		first *app.Config
		found bool
	)
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != "Dockerfile" {
			continue
		}
		found = true
		where := "service " + name
		if s.Entrypoint != nil || len(s.Command) == 0 || s.Command[0] != "serve" {
			t.Errorf("%s: command %q, want the image's entrypoint running serve", where, s.Command)
			continue
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if v == nil {
				t.Errorf("%s: %s has no value: compose would take the shell's", where, k)
				continue
			}
			env[k] = *v
		}
		cfg, ok := deployedConfig(t, where, env, s.Command[1:]...)
		if !ok {
			continue
		}
		if got := cfg.Redis.Mode(); got != mode {
			t.Errorf("%s: Redis mode %s, want %s", where, got, mode)
		}
		if first == nil {
			first = &cfg
		} else {
			if diff := cmp.Diff(first.Redis, cfg.Redis); diff != "" {
				t.Errorf("%s: a Redis other than the other services' (-theirs +its):\n%s", where, diff)
			}
			if cfg.Queue.Shards != first.Queue.Shards {
				t.Errorf("%s: HOOKD_QUEUE_SHARDS %d, the others %d: every process must use the same count", where, cfg.Queue.Shards, first.Queue.Shards)
			}
		}
		if _, port, _ := net.SplitHostPort(cfg.MetricsAddr); !slices.Contains([]string(s.Expose), port) {
			t.Errorf("%s: metrics on %q, but it exposes %q to Prometheus", where, cfg.MetricsAddr, s.Expose)
		}
		roles = append(roles, cfg.Roles...)
	}
	if !found {
		t.Fatal("no service is built from the repository's Dockerfile")
	}
	for _, r := range app.AllRoles() {
		if !slices.Contains(roles, r) {
			t.Errorf("no hookd service runs the %s role", r)
		}
	}
}

// sentinelMonitor reads the master a Sentinel's configuration watches:
// "sentinel monitor <name> <host> <port> <quorum>".
var sentinelMonitor = regexp.MustCompile(`sentinel monitor (\S+) (\S+) (\d+) (\d+)`)

// checkComposeSentinels checks that the Sentinels every hookd service
// names are services of the project listening where named, and that they
// watch the master hookd asks them for, a service too, with a quorum they
// can reach.
func checkComposeSentinels(t *testing.T, p *types.Project) {
	t.Helper()
	checked := map[string]bool{}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		addrs, master := s.Environment["HOOKD_REDIS_SENTINEL_ADDRS"], s.Environment["HOOKD_REDIS_SENTINEL_MASTER"]
		if addrs == nil || master == nil || checked[*addrs+" "+*master] {
			continue
		}
		checked[*addrs+" "+*master] = true
		sentinels := strings.Split(*addrs, ",")
		for _, addr := range sentinels {
			host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
			if err != nil {
				t.Errorf("service %s: Sentinel %q: %v", name, addr, err)
				continue
			}
			sentinel, ok := p.Services[host]
			if !ok {
				t.Errorf("service %s: Sentinel %s is no service of the project", name, host)
				continue
			}
			script := strings.Join(append(slices.Clone([]string(sentinel.Entrypoint)), sentinel.Command...), " ")
			if !strings.Contains(script, "'port "+port+"'") || !strings.Contains(script, "--sentinel") {
				t.Errorf("service %s: no Sentinel of service %s listens on port %s: %q", name, host, port, script)
			}
			m := sentinelMonitor.FindStringSubmatch(script)
			if m == nil || m[1] != *master {
				t.Errorf("service %s: Sentinel %s does not watch master %q: %q", name, host, *master, script)
				continue
			}
			if _, ok := p.Services[m[2]]; !ok {
				t.Errorf("Sentinel %s watches %s, no service of the project", host, m[2])
			}
			// A quorum under a majority lets a minority start a failover it
			// cannot be authorized for; over the count, none ever starts.
			if q, _ := strconv.Atoi(m[4]); q < len(sentinels)/2+1 || q > len(sentinels) {
				t.Errorf("Sentinel %s: quorum %s of %d Sentinels, want a majority", host, m[4], len(sentinels))
			}
		}
	}
	if len(checked) == 0 {
		t.Error("no service names Sentinels")
	}
}
