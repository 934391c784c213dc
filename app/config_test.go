package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookd/hookd/app"
	"github.com/hookd/hookd/app/redisconn"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := app.ParseConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://hookd:hookd@127.0.0.1:5432/hookd?sslmode=disable" ||
		cfg.Redis.URL != "redis://127.0.0.1:6379/0" || cfg.Redis.Mode() != redisconn.Single || cfg.AllowPrivateTargets || !cfg.Migrate ||
		cfg.DeliveryTimeout != 15*time.Second || len(cfg.RetrySchedule) != 7 {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
	if diff := cmp.Diff(app.AllRoles(), cfg.Roles); diff != "" {
		t.Errorf("default roles (-want +got):\n%s", diff)
	}
	if cfg.MaxEndpointsPerApp != 1000 {
		t.Errorf("default HOOKD_MAX_ENDPOINTS_PER_APP = %d, want 1000", cfg.MaxEndpointsPerApp)
	}
	cfg, err = app.ParseConfig(env(map[string]string{"HOOKD_MAX_ENDPOINTS_PER_APP": "50"}), "--max-endpoints-per-app=7")
	if err != nil || cfg.MaxEndpointsPerApp != 7 {
		t.Errorf("--max-endpoints-per-app=7 = %d, %v; want 7", cfg.MaxEndpointsPerApp, err)
	}
}

func TestParseConfigFlagsOverrideEnv(t *testing.T) {
	t.Parallel()
	cfg, err := app.ParseConfig(env(map[string]string{
		"HOOKD_ROLES":                 "api",
		"HOOKD_ALLOW_PRIVATE_TARGETS": "true",
		"HOOKD_MIGRATE":               "true",
	}), "--roles=relay,worker", "--http-addr=0.0.0.0:9999", "--migrate=false")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"relay", "worker"}, cfg.Roles); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}
	if cfg.HTTPAddr != "0.0.0.0:9999" || !cfg.AllowPrivateTargets || cfg.Migrate {
		t.Errorf("got %+v", cfg)
	}
}

func TestParseConfigHidesSecrets(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Passw0rd"
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{env: map[string]string{"HOOKD_DATABASE_URL": "mysql://u:" + secret + "@h/db"}},
		{env: map[string]string{"HOOKD_REDIS_URL": "redis://:" + secret + "#@h:1/0x"}},
		{args: []string{"--redis-url=redis://:" + secret + "#@h:1/0x"}},
		{args: []string{"--database-url=mysql://u:" + secret + "@h/db"}},
	} {
		_, err := app.ParseConfig(env(tc.env), tc.args...)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("%v %v: error %v, want one without the secret", tc.env, tc.args, err)
		}
	}
}

func TestParseConfigChecksTimeouts(t *testing.T) {
	t.Parallel()
	_, err := app.ParseConfig(env(map[string]string{"HOOKD_DELIVERY_TIMEOUT": "30s", "HOOKD_SHUTDOWN_TIMEOUT": "10s"}))
	if err == nil || !strings.Contains(err.Error(), "HOOKD_SHUTDOWN_TIMEOUT") {
		t.Errorf("shutdown timeout shorter than delivery timeout: %v", err)
	}
	cfg, err := app.ParseConfig(env(map[string]string{"HOOKD_METRICS_ADDR": "off"}))
	if err != nil || cfg.MetricsAddr != "" {
		t.Errorf("HOOKD_METRICS_ADDR=off: %q, %v; want disabled", cfg.MetricsAddr, err)
	}
}

func TestParseConfigBoolFlagAlone(t *testing.T) {
	t.Parallel()
	cfg, err := app.ParseConfig(env(nil), "--allow-private-targets")
	if err != nil || !cfg.AllowPrivateTargets {
		t.Errorf("--allow-private-targets alone: %+v, %v; want true", cfg.AllowPrivateTargets, err)
	}
}

func TestParseConfigNamesTheBadVariable(t *testing.T) {
	t.Parallel()
	for name, value := range map[string]string{
		"HOOKD_DATABASE_URL":          "mysql://localhost/x",
		"HOOKD_REDIS_URL":             "http://localhost",
		"HOOKD_HTTP_ADDR":             "8080",
		"HOOKD_ADMIN_API_KEY":         "short",
		"HOOKD_ALLOW_PRIVATE_TARGETS": "maybe",
		"HOOKD_ROLES":                 "api,cron",
		"HOOKD_RETRY_SCHEDULE":        "5s,later",
		"HOOKD_DELIVERY_TIMEOUT":      "-1s",
		"HOOKD_WORKER_CONCURRENCY":    "0",
		"HOOKD_MAX_ENDPOINTS_PER_APP": "0",
		"HOOKD_PPROF":                 "maybe",
	} {
		_, err := app.ParseConfig(env(map[string]string{name: value}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %v does not name the variable", name, value, err)
		}
	}
	if _, err := app.ParseConfig(env(nil), "--roles=nope"); err == nil || !strings.Contains(err.Error(), "HOOKD_ROLES") {
		t.Errorf("bad --roles: error %v does not name HOOKD_ROLES", err)
	}
}

func TestParseConfigRedisModes(t *testing.T) {
	t.Parallel()
	t.Run("Sentinel", func(t *testing.T) {
		cfg, err := app.ParseConfig(env(map[string]string{
			"HOOKD_REDIS_SENTINEL_ADDRS":    "127.0.0.1:26379, 127.0.0.1:26380",
			"HOOKD_REDIS_SENTINEL_MASTER":   "hookd",
			"HOOKD_REDIS_SENTINEL_PASSWORD": "s3",
			"HOOKD_REDIS_PASSWORD":          "r3",
			"HOOKD_REDIS_DB":                "2",
			"HOOKD_REDIS_TLS":               "true",
		}))
		if err != nil {
			t.Fatal(err)
		}
		want := redisconn.Config{URL: redisconn.DefaultURL, SentinelAddrs: []string{"127.0.0.1:26379", "127.0.0.1:26380"},
			SentinelMaster: "hookd", SentinelPassword: "s3", Password: "r3", DB: 2, TLS: true}
		if diff := cmp.Diff(want, cfg.Redis); diff != "" || cfg.Redis.Mode() != redisconn.Sentinel {
			t.Errorf("sentinel config (-want +got):\n%s", diff)
		}
	})
	t.Run("Cluster", func(t *testing.T) {
		cfg, err := app.ParseConfig(env(nil), "--redis-cluster-addrs=127.0.0.1:7000,127.0.0.1:7001,[::1]:7002")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"127.0.0.1:7000", "127.0.0.1:7001", "[::1]:7002"}, cfg.Redis.ClusterAddrs); diff != "" || cfg.Redis.Mode() != redisconn.Cluster {
			t.Errorf("cluster addresses (-want +got):\n%s", diff)
		}
	})
	// Each refusal names the variables at fault.
	for name, tc := range map[string]struct {
		env   map[string]string
		names []string
	}{
		"URL and Sentinel": {map[string]string{"HOOKD_REDIS_URL": "redis://127.0.0.1:6379/0", "HOOKD_REDIS_SENTINEL_ADDRS": "127.0.0.1:26379", "HOOKD_REDIS_SENTINEL_MASTER": "m"},
			[]string{"HOOKD_REDIS_URL", "HOOKD_REDIS_SENTINEL_ADDRS"}},
		"Sentinel and Cluster": {map[string]string{"HOOKD_REDIS_SENTINEL_ADDRS": "127.0.0.1:26379", "HOOKD_REDIS_SENTINEL_MASTER": "m", "HOOKD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000"},
			[]string{"HOOKD_REDIS_SENTINEL_ADDRS", "HOOKD_REDIS_CLUSTER_ADDRS"}},
		"Sentinel without master":  {map[string]string{"HOOKD_REDIS_SENTINEL_ADDRS": "127.0.0.1:26379"}, []string{"HOOKD_REDIS_SENTINEL_MASTER"}},
		"malformed Sentinel":       {map[string]string{"HOOKD_REDIS_SENTINEL_ADDRS": "127.0.0.1", "HOOKD_REDIS_SENTINEL_MASTER": "m"}, []string{"HOOKD_REDIS_SENTINEL_ADDRS"}},
		"malformed Cluster":        {map[string]string{"HOOKD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000,:7001"}, []string{"HOOKD_REDIS_CLUSTER_ADDRS"}},
		"bad port":                 {map[string]string{"HOOKD_REDIS_CLUSTER_ADDRS": "127.0.0.1:70000"}, []string{"HOOKD_REDIS_CLUSTER_ADDRS"}},
		"database in Cluster mode": {map[string]string{"HOOKD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000", "HOOKD_REDIS_DB": "1"}, []string{"HOOKD_REDIS_DB"}},
		"password with the URL":    {map[string]string{"HOOKD_REDIS_PASSWORD": "x"}, []string{"HOOKD_REDIS_PASSWORD"}},
		"TLS with the URL":         {map[string]string{"HOOKD_REDIS_TLS": "true"}, []string{"HOOKD_REDIS_TLS"}},
		"bad database":             {map[string]string{"HOOKD_REDIS_SENTINEL_ADDRS": "127.0.0.1:26379", "HOOKD_REDIS_SENTINEL_MASTER": "m", "HOOKD_REDIS_DB": "-1"}, []string{"HOOKD_REDIS_DB"}},
	} {
		_, err := app.ParseConfig(env(tc.env))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, n := range tc.names {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%s: error %q does not name %s", name, err, n)
			}
		}
	}
	// A flag counts as setting the URL.
	if _, err := app.ParseConfig(env(map[string]string{"HOOKD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000"}), "--redis-url=redis://127.0.0.1:6379/0"); err == nil {
		t.Error("--redis-url with HOOKD_REDIS_CLUSTER_ADDRS: accepted")
	}
	// Passwords never appear in errors.
	if _, err := app.ParseConfig(env(map[string]string{"HOOKD_REDIS_PASSWORD": "hunter2-secret"})); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password with the URL: %v", err)
	}
}

// TestParseConfigAdminKeyLength checks that an admin key shorter than 24
// characters is refused, from the environment or a flag, with an error that
// names the variable and the minimum but not the key; an empty key is
// accepted (every /v1 request is then refused).
func TestParseConfigAdminKeyLength(t *testing.T) {
	t.Parallel()
	const (
		key23 = "8charkey-0123456789abcd"
		key24 = "24charkey-0123456789abcd"
	)
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{env: map[string]string{"HOOKD_ADMIN_API_KEY": "8charkey"}},
		{env: map[string]string{"HOOKD_ADMIN_API_KEY": key23}},
		{args: []string{"--admin-api-key=" + key23}},
	} {
		_, err := app.ParseConfig(env(tc.env), tc.args...)
		if err == nil || !strings.Contains(err.Error(), "HOOKD_ADMIN_API_KEY") || !strings.Contains(err.Error(), "at least 24 characters") {
			t.Errorf("%v %v: error %v, want one naming HOOKD_ADMIN_API_KEY and its minimum of 24 characters", tc.env, tc.args, err)
		}
		if err != nil && (strings.Contains(err.Error(), key23) || strings.Contains(err.Error(), "8charkey")) {
			t.Errorf("%v %v: error %v shows the key", tc.env, tc.args, err)
		}
	}
	for _, key := range []string{key24, ""} {
		cfg, err := app.ParseConfig(env(map[string]string{"HOOKD_ADMIN_API_KEY": key}))
		if err != nil || cfg.AdminAPIKey != key {
			t.Errorf("HOOKD_ADMIN_API_KEY of %d characters: %q, %v; want accepted", len(key), cfg.AdminAPIKey, err)
		}
	}
}

func TestParseConfigPprof(t *testing.T) {
	t.Parallel()
	cfg, err := app.ParseConfig(env(nil))
	if err != nil || cfg.Pprof {
		t.Errorf("default HOOKD_PPROF: %v, %v; want off", cfg.Pprof, err)
	}
	cfg, err = app.ParseConfig(env(nil), "--pprof")
	if err != nil || !cfg.Pprof {
		t.Errorf("--pprof alone: %v, %v; want on", cfg.Pprof, err)
	}
	_, err = app.ParseConfig(env(map[string]string{"HOOKD_PPROF": "true", "HOOKD_METRICS_ADDR": "off"}))
	if err == nil || !strings.Contains(err.Error(), "HOOKD_PPROF") {
		t.Errorf("HOOKD_PPROF=true without a metrics address: %v, want an error naming HOOKD_PPROF", err)
	}
}

func TestParseConfigSecretsKey(t *testing.T) {
	t.Parallel()
	// Two keys of 32 bytes in standard base64, and bad ones that must not
	// be shown.
	const (
		k1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
		k2 = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	)
	cfg, err := app.ParseConfig(env(map[string]string{"HOOKD_SECRETS_KEY": k1 + "," + k2}))
	if err != nil || len(cfg.SecretsKeys.IDs()) != 2 {
		t.Fatalf("two keys: %v, %v; want a ring of two", cfg.SecretsKeys.IDs(), err)
	}
	cfg, err = app.ParseConfig(env(nil))
	if err != nil || cfg.SecretsKeys != nil || cfg.RequireSecretsKey {
		t.Errorf("defaults: %v, %v, %v; want no key, not required", cfg.SecretsKeys, cfg.RequireSecretsKey, err)
	}
	short := "c2hvcnQta2V5LW9mLTE2Yg==" // 16 bytes
	for _, tc := range []struct {
		env  map[string]string
		args []string
		bad  string
	}{
		{env: map[string]string{"HOOKD_SECRETS_KEY": short}, bad: short},
		{env: map[string]string{"HOOKD_SECRETS_KEY": "not-base64-at-all!"}, bad: "not-base64"},
		{env: map[string]string{"HOOKD_SECRETS_KEY": k1 + "," + k1}, bad: k1},
		{env: map[string]string{"HOOKD_SECRETS_KEY": k1 + "," + short}, bad: short},
		{args: []string{"--secrets-key=" + short}, bad: short},
	} {
		_, err := app.ParseConfig(env(tc.env), tc.args...)
		if err == nil || !strings.Contains(err.Error(), "HOOKD_SECRETS_KEY") {
			t.Errorf("%v %v: error %v, want one naming HOOKD_SECRETS_KEY", tc.env, tc.args, err)
		}
		if err != nil && (strings.Contains(err.Error(), tc.bad) || strings.Contains(err.Error(), k1)) {
			t.Errorf("%v %v: error %v shows the key", tc.env, tc.args, err)
		}
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{env: map[string]string{"HOOKD_REQUIRE_SECRETS_KEY": "true"}},
		{args: []string{"--require-secrets-key"}},
	} {
		_, err := app.ParseConfig(env(tc.env), tc.args...)
		if err == nil || !strings.Contains(err.Error(), "HOOKD_REQUIRE_SECRETS_KEY") || !strings.Contains(err.Error(), "HOOKD_SECRETS_KEY is not set") {
			t.Errorf("%v %v without a key: %v; want an error naming both variables", tc.env, tc.args, err)
		}
	}
	cfg, err = app.ParseConfig(env(map[string]string{"HOOKD_REQUIRE_SECRETS_KEY": "true", "HOOKD_SECRETS_KEY": k1}))
	if err != nil || !cfg.RequireSecretsKey || cfg.SecretsKeys == nil {
		t.Errorf("required and given: %v", err)
	}
}

func TestParseConfigPortal(t *testing.T) {
	t.Parallel()
	cfg, err := app.ParseConfig(env(nil))
	if err != nil || cfg.PublicURL != "" || cfg.PortalFrameAncestors != "'none'" {
		t.Errorf("defaults: public URL %q, frame ancestors %q, %v; want empty (derived) and 'none'", cfg.PublicURL, cfg.PortalFrameAncestors, err)
	}
	cfg, err = app.ParseConfig(env(map[string]string{
		"HOOKD_PUBLIC_URL":             "https://hooks.example.com/",
		"HOOKD_PORTAL_FRAME_ANCESTORS": "'self' https://app.example.com",
	}))
	if err != nil || cfg.PublicURL != "https://hooks.example.com" || cfg.PortalFrameAncestors != "'self' https://app.example.com" {
		t.Errorf("set: %q, %q, %v", cfg.PublicURL, cfg.PortalFrameAncestors, err)
	}
	for name, values := range map[string][]string{
		"HOOKD_PUBLIC_URL": {"ftp://hooks.example.com", "hooks.example.com", "https://hooks.example.com/hookd",
			"https://u:p@hooks.example.com", "https://hooks.example.com?x=1", "https://hooks.example.com#top"},
		"HOOKD_PORTAL_FRAME_ANCESTORS": {" ", "https://a.example; script-src *", "'none' https://a.example",
			"https://a.example,https://b.example", "'unsafe-inline'", "https://a.example\x00"},
	} {
		for _, v := range values {
			if _, err := app.ParseConfig(env(map[string]string{name: v})); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: error %v does not name the variable", name, v, err)
			}
		}
	}
}
