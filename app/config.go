package app

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/hookd/hookd/app/portal"
	"github.com/hookd/hookd/app/redisconn"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/app/secretbox"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/repair"
	"github.com/hookd/hookd/tasks/worker"
)

// Roles a process can run.
const (
	RoleAPI    = "api"
	RoleRelay  = "relay"
	RoleWorker = "worker"
	// RoleReconciler enqueues again what Redis lost (tasks.Reconciler).
	RoleReconciler = "reconciler"
)

// AllRoles are the roles `hookd serve` runs by default.
func AllRoles() []string { return []string{RoleAPI, RoleRelay, RoleWorker, RoleReconciler} }

// Config is hookd's configuration, read from HOOKD_* environment variables
// and overridden by flags.
type Config struct {
	DatabaseURL         string
	DatabaseMaxConns    int
	Redis               redisconn.Config
	HTTPAddr            string
	MetricsAddr         string
	AdminAPIKey         string
	AllowPrivateTargets bool
	Roles               []string
	Migrate             bool
	RetrySchedule       []time.Duration
	DeliveryTimeout     time.Duration
	Concurrency         int
	Pollers             int
	ReconcileInterval   time.Duration
	ReconcileAfter      time.Duration
	EventRetention      time.Duration
	AttemptRetention    time.Duration
	TaskCheckInterval   time.Duration
	DelayedCheck        time.Duration
	ShutdownTimeout     time.Duration
	MaxEventBytes       int64
	ConnectTimeout      time.Duration
	TLSTimeout          time.Duration
	HeaderTimeout       time.Duration
	MaxRetryAfter       time.Duration
	CircuitThreshold    int
	CircuitCooldown     time.Duration
	DisableAfter        time.Duration
	EndpointConcurrency int
	AppConcurrency      int
	MaxEndpointsPerApp  int
	OverflowBacklog     int
	MonitoringReadOnly  bool
	PrometheusURL       string
	// PublicURL is the base URL of the API as its users reach it
	// (HOOKD_PUBLIC_URL), for the links hookd hands out; empty derives it
	// from the API listener's address.
	PublicURL string
	// PortalFrameAncestors is the CSP frame-ancestors of the consumer
	// portal (HOOKD_PORTAL_FRAME_ANCESTORS).
	PortalFrameAncestors string
	Pprof                bool
	// SecretsKeys seals the secrets hookd stores (HOOKD_SECRETS_KEY); nil
	// stores them plain.
	SecretsKeys *secretbox.Ring
	// RequireSecretsKey refuses to start without SecretsKeys.
	RequireSecretsKey bool
	// OperationalApp names the application that receives the operational
	// webhooks (HOOKD_OPERATIONAL_APP); empty: none are published.
	OperationalApp string

	// Queue overrides the task queue names (tests use their own).
	Queue tasks.QueueConfig
}

// MinAdminAPIKeyLength is the shortest HOOKD_ADMIN_API_KEY hookd accepts,
// in characters: the key opens every application's data and Asynqmon, and
// is sent with every request, so it must withstand guessing.
const MinAdminAPIKeyLength = 24

// defaultPprof leaves Go's profiles unserved unless HOOKD_PPROF asks for
// them: /debug/pprof/ asks for no key, a heap profile shows what the
// process holds, and a CPU profile or a trace costs CPU while it runs.
const defaultPprof = false

// setting is one configuration entry: its environment variable, its flag,
// its default and where it goes.
type setting struct {
	env, flag, def, usage string
	set                   func(c *Config, v string) error
}

func settings() []setting {
	return []setting{
		{"HOOKD_DATABASE_URL", "database-url", "postgres://hookd:hookd@127.0.0.1:5432/hookd?sslmode=disable",
			"Postgres URL", func(c *Config, v string) error {
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
					return errors.New("want postgres://user:password@host:port/database")
				}
				c.DatabaseURL = v
				return nil
			}},
		{"HOOKD_DATABASE_MAX_CONNS", "database-max-conns", "32",
			"most Postgres connections this process opens",
			func(c *Config, v string) error { return setPositive(&c.DatabaseMaxConns, v) }},
		{redisconn.EnvURL, "redis-url", redisconn.DefaultURL,
			"Redis URL of one server (Single mode)", func(c *Config, v string) error {
				if _, err := redis.ParseURL(v); err != nil {
					return errors.New("want redis://[user:password@]host:port/db")
				}
				c.Redis.URL = v
				return nil
			}},
		{redisconn.EnvSentinelAddrs, "redis-sentinel-addrs", "",
			"comma-separated host:port of Redis Sentinels (Sentinel mode)", func(c *Config, v string) error {
				return setAddrs(&c.Redis.SentinelAddrs, v)
			}},
		{redisconn.EnvSentinelMaster, "redis-sentinel-master", "",
			"name of the master the Sentinels watch (Sentinel mode)", func(c *Config, v string) error {
				c.Redis.SentinelMaster = v
				return nil
			}},
		{redisconn.EnvSentinelPassword, "redis-sentinel-password", "",
			"password of the Sentinels (Sentinel mode)", func(c *Config, v string) error {
				c.Redis.SentinelPassword = v
				return nil
			}},
		{redisconn.EnvClusterAddrs, "redis-cluster-addrs", "",
			"comma-separated host:port of Redis Cluster nodes (Cluster mode)", func(c *Config, v string) error {
				return setAddrs(&c.Redis.ClusterAddrs, v)
			}},
		{redisconn.EnvPassword, "redis-password", "",
			"password of the Redis servers (Sentinel and Cluster modes)", func(c *Config, v string) error {
				c.Redis.Password = v
				return nil
			}},
		{redisconn.EnvDB, "redis-db", "0",
			"Redis database number (Sentinel mode)", func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return errors.New("want a database number, 0 or more")
				}
				c.Redis.DB = n
				return nil
			}},
		{redisconn.EnvTLS, "redis-tls", "false",
			"connect to the Redis servers with TLS (Sentinel and Cluster modes)", func(c *Config, v string) error {
				return setBool(&c.Redis.TLS, v)
			}},
		{"HOOKD_HTTP_ADDR", "http-addr", "127.0.0.1:8080",
			"API listen address", func(c *Config, v string) error { return setAddr(&c.HTTPAddr, v) }},
		{"HOOKD_METRICS_ADDR", "metrics-addr", "127.0.0.1:9464",
			"Prometheus /metrics listen address; \"off\" disables it", func(c *Config, v string) error {
				if v == "off" {
					c.MetricsAddr = ""
					return nil
				}
				return setAddr(&c.MetricsAddr, v)
			}},
		{"HOOKD_ADMIN_API_KEY", "admin-api-key", "",
			fmt.Sprintf("admin API key for /v1 and Asynqmon (Authorization: Bearer ...), at least %d characters; empty refuses every /v1 request", MinAdminAPIKeyLength),
			func(c *Config, v string) error {
				if v != "" && utf8.RuneCountInString(v) < MinAdminAPIKeyLength {
					return fmt.Errorf("want at least %d characters (openssl rand -hex 16 makes one of 32)", MinAdminAPIKeyLength)
				}
				c.AdminAPIKey = v
				return nil
			}},
		{"HOOKD_SECRETS_KEY", "secrets-key", "",
			"comma-separated AES-256 keys, each 32 random bytes in standard base64 (openssl rand -base64 32), that encrypt the signing secrets stored in Postgres: the first encrypts, every one decrypts; empty stores them unencrypted",
			func(c *Config, v string) error {
				r, err := secretbox.ParseRing(v)
				c.SecretsKeys = r
				return err
			}},
		{"HOOKD_REQUIRE_SECRETS_KEY", "require-secrets-key", "false",
			"refuse to start without HOOKD_SECRETS_KEY", func(c *Config, v string) error {
				return setBool(&c.RequireSecretsKey, v)
			}},
		{"HOOKD_OPERATIONAL_APP", "operational-app", "",
			"ID of the application (app_...) that receives hookd's operational webhooks (hookd.endpoint.*, hookd.delivery.exhausted); it must exist when hookd starts; empty publishes none",
			func(c *Config, v string) error {
				if v != "" && !registry.IsAppID(v) {
					return errors.New("want an application ID: app_ and 26 lower-case letters or digits")
				}
				c.OperationalApp = v
				return nil
			}},
		{"HOOKD_ALLOW_PRIVATE_TARGETS", "allow-private-targets", "false",
			"allow endpoints on loopback, private and link-local addresses", func(c *Config, v string) error {
				return setBool(&c.AllowPrivateTargets, v)
			}},
		{"HOOKD_ROLES", "roles", strings.Join(AllRoles(), ","),
			"comma-separated roles to run: api, relay, worker, reconciler", func(c *Config, v string) error {
				c.Roles = nil
				for r := range strings.SplitSeq(v, ",") {
					r = strings.TrimSpace(r)
					if !slices.Contains(AllRoles(), r) {
						return fmt.Errorf("unknown role %q (want api, relay, worker or reconciler)", r)
					}
					if !slices.Contains(c.Roles, r) {
						c.Roles = append(c.Roles, r)
					}
				}
				return nil
			}},
		{"HOOKD_MIGRATE", "migrate", "true",
			"apply database migrations when serve starts", func(c *Config, v string) error {
				return setBool(&c.Migrate, v)
			}},
		{"HOOKD_RETRY_SCHEDULE", "retry-schedule", formatDurations(tasks.DefaultRetrySchedule()),
			"delays before each delivery retry (comma-separated Go durations)", func(c *Config, v string) error {
				s, err := tasks.ParseRetrySchedule(v)
				c.RetrySchedule = s
				return err
			}},
		{"HOOKD_DELIVERY_TIMEOUT", "delivery-timeout", formatDuration(delivery.DefaultTimeout),
			"total timeout of one delivery attempt", func(c *Config, v string) error {
				return setDuration(&c.DeliveryTimeout, v)
			}},
		{"HOOKD_DELIVERY_CONNECT_TIMEOUT", "delivery-connect-timeout", formatDuration(delivery.DefaultConnectTimeout),
			"timeout of the TCP connect of a delivery", func(c *Config, v string) error {
				return setDuration(&c.ConnectTimeout, v)
			}},
		{"HOOKD_DELIVERY_TLS_TIMEOUT", "delivery-tls-timeout", formatDuration(delivery.DefaultTLSTimeout),
			"timeout of the TLS handshake of a delivery", func(c *Config, v string) error {
				return setDuration(&c.TLSTimeout, v)
			}},
		{"HOOKD_DELIVERY_HEADER_TIMEOUT", "delivery-header-timeout", formatDuration(delivery.DefaultTimeout),
			"how long a delivery waits for response headers once sent (HOOKD_DELIVERY_TIMEOUT still bounds it)", func(c *Config, v string) error {
				return setDuration(&c.HeaderTimeout, v)
			}},
		{"HOOKD_MAX_RETRY_AFTER", "max-retry-after", formatDuration(delivery.DefaultMaxRetryAfter),
			"cap on the wait a receiver can ask for with Retry-After on a 429 or 503", func(c *Config, v string) error {
				return setDuration(&c.MaxRetryAfter, v)
			}},
		{"HOOKD_CIRCUIT_THRESHOLD", "circuit-threshold", strconv.Itoa(guard.DefaultThreshold),
			"consecutive failed attempts that open an endpoint's circuit", func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err == nil && n < 1 {
					err = errors.New("want a positive number")
				}
				c.CircuitThreshold = n
				return err
			}},
		{"HOOKD_CIRCUIT_COOLDOWN", "circuit-cooldown", guard.DefaultCooldown.String(),
			"how long an open circuit holds deliveries before one probe tests the endpoint", func(c *Config, v string) error {
				return setDuration(&c.CircuitCooldown, v)
			}},
		{"HOOKD_ENDPOINT_DISABLE_AFTER", "endpoint-disable-after", "120h",
			"an endpoint whose every attempt failed for this long is disabled", func(c *Config, v string) error {
				return setDuration(&c.DisableAfter, v)
			}},
		{"HOOKD_ENDPOINT_CONCURRENCY", "endpoint-concurrency", strconv.Itoa(guard.DefaultPerEndpoint),
			"deliveries to one endpoint in flight at once, across all workers", func(c *Config, v string) error {
				return setPositive(&c.EndpointConcurrency, v)
			}},
		{"HOOKD_APP_CONCURRENCY", "app-concurrency", strconv.Itoa(guard.DefaultPerApp),
			"deliveries of one app in flight at once, across all workers: what one tenant's slow or hanging endpoints can hold of them", func(c *Config, v string) error {
				return setPositive(&c.AppConcurrency, v)
			}},
		{"HOOKD_MAX_ENDPOINTS_PER_APP", "max-endpoints-per-app", strconv.Itoa(registry.DefaultMaxEndpointsPerApp),
			"most endpoints one app may have; creating another answers 422 (urn:hookd:problem:quota-exceeded)", func(c *Config, v string) error {
				return setPositive(&c.MaxEndpointsPerApp, v)
			}},
		{"HOOKD_OVERFLOW_BACKLOG", "overflow-backlog", strconv.Itoa(guard.DefaultBacklog),
			"unfinished deliveries an endpoint may have before its new ones go to the low-priority overflow queue (so may an app before those of its endpoints with more than HOOKD_ENDPOINT_CONCURRENCY unfinished go there)", func(c *Config, v string) error {
				return setPositive(&c.OverflowBacklog, v)
			}},
		{"HOOKD_QUEUE_SHARDS", "queue-shards", strconv.Itoa(tasks.DefaultShards),
			"delivery queues the deliveries are spread over, by endpoint: with a Redis Cluster, enough to spread them over its masters; every process must use the same count", func(c *Config, v string) error {
				if err := setPositive(&c.Queue.Shards, v); err != nil {
					return err
				}
				if c.Queue.Shards > tasks.MaxShards {
					return fmt.Errorf("want at most %d", tasks.MaxShards)
				}
				return nil
			}},
		{"HOOKD_MONITORING_READONLY", "monitoring-readonly", "false",
			"serve Asynqmon at /monitoring/ read-only (no run, delete or archive buttons)", func(c *Config, v string) error {
				return setBool(&c.MonitoringReadOnly, v)
			}},
		{"HOOKD_PROMETHEUS_URL", "prometheus-url", "",
			"Prometheus base URL, for the charts of Asynqmon at /monitoring/ (empty: no charts)", func(c *Config, v string) error {
				if v != "" {
					u, err := url.Parse(v)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
						return errors.New("want an http(s) URL")
					}
				}
				c.PrometheusURL = v
				return nil
			}},
		{"HOOKD_PUBLIC_URL", "public-url", "",
			"base URL of the API as its users reach it (https://hooks.example.com), for the consumer portal links; empty: http:// and the API's listen address", func(c *Config, v string) error {
				if v != "" {
					u, err := url.Parse(v)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
						(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
						return errors.New("want an http(s) URL of a host, without path, query or credentials")
					}
					v = strings.TrimSuffix(v, "/")
				}
				c.PublicURL = v
				return nil
			}},
		{"HOOKD_PORTAL_FRAME_ANCESTORS", "portal-frame-ancestors", portal.DefaultFrameAncestors,
			"CSP frame-ancestors of the consumer portal: the origins whose pages may embed it in an iframe ('self', https://app.example.com ...); 'none' forbids it", func(c *Config, v string) error {
				if err := portal.CheckFrameAncestors(v); err != nil {
					return err
				}
				c.PortalFrameAncestors = v
				return nil
			}},
		{"HOOKD_PPROF", "pprof", strconv.FormatBool(defaultPprof),
			"serve Go's profiles at /debug/pprof/ on HOOKD_METRICS_ADDR, which asks for no key: keep that address internal", func(c *Config, v string) error {
				return setBool(&c.Pprof, v)
			}},
		{"HOOKD_WORKER_CONCURRENCY", "worker-concurrency", strconv.Itoa(worker.DefaultConcurrency),
			"tasks a worker processes at once", func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err == nil && n < 1 {
					err = errors.New("want a positive number")
				}
				c.Concurrency = n
				return err
			}},
		{"HOOKD_WORKER_POLLERS", "worker-pollers", strconv.Itoa(worker.DefaultPollers),
			"asynq servers a worker runs, sharing HOOKD_WORKER_CONCURRENCY: each dequeues one task per Redis round trip and polls idle queues on its own",
			func(c *Config, v string) error { return setPositive(&c.Pollers, v) }},
		{"HOOKD_TASK_CHECK_INTERVAL", "task-check-interval", formatDuration(worker.DefaultTaskCheckInterval),
			"how long an idle poller waits before it looks at the queues again (0.5 to 1.5 times this); each idle poller costs Redis one dequeue per wait",
			func(c *Config, v string) error { return setDuration(&c.TaskCheckInterval, v) }},
		{"HOOKD_DELAYED_TASK_CHECK_INTERVAL", "delayed-task-check-interval", formatDuration(worker.DefaultDelayedTaskCheckInterval),
			"how often a worker process moves retries and postponed deliveries that are due to their queue (its first poller; the others every minute, as spares)",
			func(c *Config, v string) error { return setDuration(&c.DelayedCheck, v) }},
		{"HOOKD_RECONCILE_INTERVAL", "reconcile-interval", formatDuration(repair.DefaultReconcileInterval),
			"pause between the reconciler's passes (repairs, and retention)",
			func(c *Config, v string) error { return setDuration(&c.ReconcileInterval, v) }},
		{"HOOKD_RECONCILE_AFTER", "reconcile-after", formatDuration(repair.DefaultReconcileAfter),
			"how long a published event may wait for its fan-out, and a pending delivery for its next attempt, before the reconciler checks that Redis holds its task",
			func(c *Config, v string) error { return setDuration(&c.ReconcileAfter, v) }},
		{"HOOKD_EVENT_RETENTION", "event-retention", formatDuration(repair.DefaultEventRetention),
			"how long events are kept, with their deliveries and attempts (the reconciler role deletes them once fanned out and none is pending)",
			func(c *Config, v string) error { return setDuration(&c.EventRetention, v) }},
		{"HOOKD_ATTEMPT_RETENTION", "attempt-retention", formatDuration(repair.DefaultEventRetention),
			"how long delivery attempts, with the response bodies they recorded, are kept; only a period shorter than HOOKD_EVENT_RETENTION has effect, since attempts go with their event",
			func(c *Config, v string) error { return setDuration(&c.AttemptRetention, v) }},
		{"HOOKD_MAX_EVENT_BYTES", "max-event-bytes", "262144",
			"largest accepted body of POST /v1/apps/{app_id}/events, in bytes", func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1024 || n > 16<<20 {
					return errors.New("want a number of bytes between 1024 and 16777216")
				}
				c.MaxEventBytes = n
				return nil
			}},
		{"HOOKD_SHUTDOWN_TIMEOUT", "shutdown-timeout", "20s",
			"how long in-flight work may finish after SIGTERM", func(c *Config, v string) error {
				return setDuration(&c.ShutdownTimeout, v)
			}},
	}
}

// formatDurations writes ds as ParseRetrySchedule reads them, e.g. "5s,5m0s".
func formatDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = formatDuration(d)
	}
	return strings.Join(parts, ",")
}

// formatDuration writes d as time.ParseDuration reads it, without zero
// units: 1h, not 1h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func setAddr(dst *string, v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return err
	}
	*dst = v
	return nil
}

func setBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	*dst = b
	return err
}

func setDuration(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err == nil && d <= 0 {
		err = errors.New("want a positive duration")
	}
	*dst = d
	return err
}

// parseConfig builds a Config from the environment (through getenv) and
// then from flags in args, validating each value. Errors name the variable
// or flag at fault. It returns the arguments left after the flags.
func parseConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, []string, error) {
	// Secret settings may hold credentials: their values never appear in
	// errors. Boolean ones may be given alone (--migrate means true).
	secretSettings := []string{"HOOKD_DATABASE_URL", redisconn.EnvURL, "HOOKD_ADMIN_API_KEY", "HOOKD_SECRETS_KEY", redisconn.EnvSentinelPassword, redisconn.EnvPassword}
	booleanSettings := []string{"HOOKD_ALLOW_PRIVATE_TARGETS", "HOOKD_REQUIRE_SECRETS_KEY", "HOOKD_MIGRATE", "HOOKD_PPROF", redisconn.EnvTLS}
	var c Config
	type deferred struct {
		s setting
		v string
	}
	var secretFlags []deferred
	for _, s := range settings() {
		secret := slices.Contains(secretSettings, s.env)
		v, fromEnv := s.def, false
		if e := getenv(s.env); e != "" {
			v, fromEnv = e, true
		}
		if err := s.set(&c, v); err != nil {
			switch {
			case !fromEnv:
				return Config{}, nil, fmt.Errorf("invalid default of %s: %w", s.env, err)
			case secret:
				return Config{}, nil, fmt.Errorf("invalid %s (value hidden): %w", s.env, err)
			}
			return Config{}, nil, fmt.Errorf("invalid %s=%q: %w", s.env, v, err)
		}
		set := func(v string) error {
			if secret {
				// Checked after parsing: the flag package would print the value.
				secretFlags = append(secretFlags, deferred{s, v})
				return nil
			}
			if err := s.set(&c, v); err != nil {
				return fmt.Errorf("%s: %w", s.env, err)
			}
			return nil
		}
		usage := fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.def)
		if slices.Contains(booleanSettings, s.env) {
			fs.BoolFunc(s.flag, usage, set) // --flag alone means true
		} else {
			fs.Func(s.flag, usage, set)
		}
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, nil, err
	}
	for _, d := range secretFlags {
		if err := d.s.set(&c, d.v); err != nil {
			return Config{}, nil, fmt.Errorf("invalid --%s (%s; value hidden): %w", d.s.flag, d.s.env, err)
		}
	}
	urlSet := getenv(redisconn.EnvURL) != ""
	fs.Visit(func(f *flag.Flag) { urlSet = urlSet || f.Name == "redis-url" })
	if err := c.Redis.Check(urlSet); err != nil {
		return Config{}, nil, fmt.Errorf("invalid Redis configuration: %w", err)
	}
	if c.RequireSecretsKey && c.SecretsKeys == nil {
		return Config{}, nil, errors.New("HOOKD_REQUIRE_SECRETS_KEY is true but HOOKD_SECRETS_KEY is not set: set a key (openssl rand -base64 32) to encrypt the stored secrets")
	}
	if c.Pprof && c.MetricsAddr == "" {
		return Config{}, nil, errors.New("invalid HOOKD_PPROF: profiles are served on HOOKD_METRICS_ADDR, which is off")
	}
	if c.ShutdownTimeout < c.DeliveryTimeout {
		return Config{}, nil, fmt.Errorf("invalid HOOKD_SHUTDOWN_TIMEOUT: %s is shorter than HOOKD_DELIVERY_TIMEOUT (%s), so shutdown would cut deliveries short", c.ShutdownTimeout, c.DeliveryTimeout)
	}
	return c, fs.Args(), nil
}

// masked returns the configuration as log attributes, secrets hidden.
func (c Config) masked() []any {
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return "****"
	}
	dbURL := c.DatabaseURL
	if u, err := url.Parse(dbURL); err == nil {
		dbURL = u.Redacted()
	}
	redisURL := c.Redis.URL
	if u, err := url.Parse(redisURL); err == nil {
		redisURL = u.Redacted()
	}
	redisAttrs := []any{"redis_mode", string(c.Redis.Mode())}
	switch c.Redis.Mode() {
	case redisconn.Single:
		redisAttrs = append(redisAttrs, "redis_url", redisURL)
	case redisconn.Sentinel:
		redisAttrs = append(redisAttrs, "redis_sentinel_addrs", strings.Join(c.Redis.SentinelAddrs, ","), "redis_sentinel_master", c.Redis.SentinelMaster, "redis_db", c.Redis.DB, "redis_tls", c.Redis.TLS)
	case redisconn.Cluster:
		redisAttrs = append(redisAttrs, "redis_cluster_addrs", strings.Join(c.Redis.ClusterAddrs, ","), "redis_tls", c.Redis.TLS)
	}
	return append([]any{
		"database_url", dbURL,
		"http_addr", c.HTTPAddr, "metrics_addr", c.MetricsAddr,
		"admin_api_key", mask(c.AdminAPIKey), "allow_private_targets", c.AllowPrivateTargets,
		"roles", strings.Join(c.Roles, ","), "retry_schedule", fmt.Sprint(c.RetrySchedule),
		"delivery_timeout", c.DeliveryTimeout.String(), "worker_concurrency", c.Concurrency, "worker_pollers", c.Pollers,
		"max_endpoints_per_app", c.MaxEndpointsPerApp, "pprof", c.Pprof,
		"public_url", c.PublicURL, "portal_frame_ancestors", c.PortalFrameAncestors,
		"secrets_key_ids", strings.Join(c.SecretsKeys.IDs(), ","), "operational_app", c.OperationalApp,
	}, redisAttrs...)
}

// setAddrs sets a list of host:port; empty means none.
func setAddrs(dst *[]string, v string) error {
	*dst = nil
	if v == "" {
		return nil
	}
	addrs, err := redisconn.ParseAddrs(v)
	*dst = addrs
	return err
}

func setPositive(dst *int, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return errors.New("want a positive number")
	}
	*dst = n
	return nil
}
