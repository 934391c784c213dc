// Package app wires hookd together: configuration, the database and its
// migrations, Redis, and the roles a process runs (api, relay, worker,
// reconciler).
// Nothing imports app except cmd/hookd.
package app

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd/app/api"
	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/links"
	"github.com/hookd/hookd/app/operational"
	"github.com/hookd/hookd/app/portal"
	"github.com/hookd/hookd/app/redisconn"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/outbox"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/body"
	"github.com/hookd/hookd/tasks/deadletter"
	"github.com/hookd/hookd/tasks/delivery"
	"github.com/hookd/hookd/tasks/fanout"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/ledger"
	"github.com/hookd/hookd/tasks/recovery"
	"github.com/hookd/hookd/tasks/repair"
	"github.com/hookd/hookd/tasks/worker"
)

// App is a configured hookd process: its connections, listeners and roles.
type App struct {
	cfg     Config
	log     *slog.Logger
	db      *bun.DB
	rdb     redis.UniversalClient
	metrics *prometheus.Registry
	// opsApp receives the operational webhooks ("" for none).
	opsApp string

	apiLn, metricsLn net.Listener
}

// New connects to Postgres and Redis, applies migrations when cfg.Migrate is
// set, and opens the listeners of cfg's roles. Run starts serving; Close
// releases everything if Run is never called.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, metrics: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.db, err = openDB(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns); err != nil {
		return nil, err
	}
	if a.rdb, err = cfg.Redis.Open(ctx, cfg.Concurrency+redisPoolSpare); err != nil {
		return nil, err
	}
	warnEviction(ctx, a.rdb, log)
	if cfg.Migrate {
		if err := Migrate(ctx, a.db, log); err != nil {
			return nil, err
		}
	}
	if err := sealSecrets(ctx, a.db, cfg, log); err != nil {
		return nil, err
	}
	if a.opsApp, err = setUpOperational(ctx, a.db, cfg.OperationalApp, log); err != nil {
		return nil, err
	}
	if a.has(RoleAPI) {
		if a.apiLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listen on HOOKD_HTTP_ADDR: %w", err)
		}
	}
	if cfg.MetricsAddr != "" {
		if a.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("listen on HOOKD_METRICS_ADDR: %w", err)
		}
	}
	a.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return a, nil
}

// openDB connects to url with a pool of at most maxConns connections.
func openDB(ctx context.Context, url string, maxConns int) (*bun.DB, error) {
	// Sessions are named hookd unless the URL names them (application_name).
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithApplicationName("hookd"), pgdriver.WithDSN(url)))
	sqldb.SetMaxOpenConns(maxConns)
	sqldb.SetMaxIdleConns(maxConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	db := bun.NewDB(sqldb, pgdialect.New())
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to postgres (HOOKD_DATABASE_URL): %w", err)
	}
	return db, nil
}

// openMigrated opens the database and brings its schema up to date: what
// the CLI commands that work on the database (migrate, apikey, dlq) need.
// The caller closes the database.
func openMigrated(ctx context.Context, url string, log *slog.Logger) (*bun.DB, error) {
	db, err := openDB(ctx, url, 4)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, db, log); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// sealSecrets seals, with HOOKD_SECRETS_KEY, the secrets stored plain
// (before a key was set); without a key it warns that they are stored
// plain. Processes starting together may both run it: each row is sealed
// once.
func sealSecrets(ctx context.Context, db *bun.DB, cfg Config, log *slog.Logger) error {
	if cfg.SecretsKeys == nil {
		log.WarnContext(ctx, "HOOKD_SECRETS_KEY is not set: signing secrets, client keys and OAuth client secrets are stored unencrypted in Postgres")
		return nil
	}
	n, err := registry.New(db, registry.Config{Secrets: cfg.SecretsKeys}).SealSecrets(ctx, false)
	if err != nil {
		return fmt.Errorf("encrypt stored secrets with HOOKD_SECRETS_KEY: %w", err)
	}
	if n > 0 {
		log.InfoContext(ctx, "stored secrets encrypted", slog.Int("rows", n), slog.String("key_id", cfg.SecretsKeys.IDs()[0]))
	}
	return nil
}

// redisPoolSpare is how many Redis connections a process keeps beyond
// its worker concurrency: every worker slot talks to Redis, besides
// asynq's own loops, and go-redis' default (10 per CPU) would make them
// queue. In Single mode the URL's pool_size wins.
const redisPoolSpare = 50

// monitorPoolSize is the pool of each of Asynqmon's own Redis clients.
const monitorPoolSize = 4

// warnEviction warns when Redis may evict keys: an evicted task is lost
// until the reconciler finds it, and asynq can leave tasks stuck active.
// Managed Redis may refuse CONFIG GET; then nothing is said.
func warnEviction(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	cfg, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if policy := cfg["maxmemory-policy"]; err == nil && policy != "" && policy != "noeviction" {
		log.WarnContext(ctx, "redis may evict hookd's keys: set maxmemory-policy to noeviction", slog.String("maxmemory_policy", policy))
	}
}

func (a *App) has(role string) bool { return slices.Contains(a.cfg.Roles, role) }

// HTTPAddr returns the API's listen address, or "" without the api role.
func (a *App) HTTPAddr() string {
	if a.apiLn == nil {
		return ""
	}
	return a.apiLn.Addr().String()
}

// publicURL is the base of the links hookd hands out: HOOKD_PUBLIC_URL, or
// http:// and the API listener's address (loopback when it listens on
// every address).
func (a *App) publicURL() string {
	if a.cfg.PublicURL != "" {
		return a.cfg.PublicURL
	}
	host, port, err := net.SplitHostPort(a.HTTPAddr())
	if err != nil {
		return "http://" + a.HTTPAddr()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Gatherer returns the registry /metrics serves.
func (a *App) Gatherer() prometheus.Gatherer { return a.metrics }

// MetricsAddr returns the metrics listen address, or "" when disabled.
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// deliverTimeoutMargin is how much longer a delivery task may run than its
// HTTP attempt: the gate, the body and the record of the attempt.
const deliverTimeoutMargin = 15 * time.Second

// queueConfig returns the configuration of the task queue: the queue
// names, the retry policy and the delivery task timeout. The workers serve
// it, and every command that enqueues (serve, dlq retry) enqueues with it,
// so that a task gets the same options whoever enqueues it.
func (c Config) queueConfig() tasks.QueueConfig {
	q := c.Queue
	q.Retry.Schedule = c.RetrySchedule
	// The task lease must outlast the HTTP timeout, or asynq could hand a
	// slow delivery to a second worker while the first still waits.
	q.DeliverTimeout = c.DeliveryTimeout + deliverTimeoutMargin
	return q
}

// newQueue returns the task queue of cfg on rdb, and the gate that routes
// its deliveries by backlog and admits their attempts.
func newQueue(rdb redis.UniversalClient, cfg Config) (*tasks.Queue, *guard.Gate) {
	q := cfg.queueConfig()
	gate := guard.New(rdb, guard.Config{
		PerEndpoint: cfg.EndpointConcurrency,
		PerApp:      cfg.AppConcurrency,
		Backlog:     cfg.OverflowBacklog,
		// A slot, a probe and a step of the waiting rooms each last about
		// as long as a delivery task may run.
		SlotTTL:      2 * q.DeliverTimeout,
		ProbeTimeout: q.DeliverTimeout,
		ParkStep:     q.DeliverTimeout,
		Threshold:    cfg.CircuitThreshold,
		Cooldown:     cfg.CircuitCooldown,
	})
	return tasks.NewQueue(rdb, gate, q), gate
}

// Run runs the configured roles until ctx is done or one of them fails,
// then shuts them down in order (intake first, workers drained) and closes
// the connections.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	a.log.InfoContext(ctx, "hookd starting", a.cfg.masked()...)

	queueCfg := a.cfg.queueConfig()
	queue, gate := newQueue(a.rdb, a.cfg)
	store := ledger.New(a.db)
	var endpointChanged registry.EndpointChangeFunc
	if a.opsApp != "" {
		// Operational webhooks: written with each dead letter and each
		// change of an endpoint's state, in its transaction.
		ops := operational.New(a.opsApp, a.metrics)
		store = store.WithDeadLetters(ops.DeadLettered)
		endpointChanged = ops.EndpointChanged
	}
	// The inspector shares a.rdb, which Close closes.
	inspector := asynq.NewInspectorFromRedisClient(a.rdb)
	a.metrics.MustRegister(newOutboxCollector(a.db), asynqmetrics.NewQueueMetricsCollector(inspector))

	eventStore := events.NewStore(a.db)
	reg := registry.New(a.db, registry.Config{
		AllowPrivateTargets: a.cfg.AllowPrivateTargets,
		DisableAfter:        a.cfg.DisableAfter,
		MaxEndpointsPerApp:  a.cfg.MaxEndpointsPerApp,
		Log:                 a.log,
		Metrics:             a.metrics,
		AppDeleted:          eventStore.ForgetApp,
		EndpointChanged:     endpointChanged,
		Secrets:             a.cfg.SecretsKeys,
	})
	deadLetters := deadletter.New(store, queue, deadletter.NewMetrics(a.metrics))
	recoveries := recovery.New(store, queue, deadLetters, reg.RecoveryTarget)
	g, ctx := errgroup.WithContext(ctx)
	checks := map[string]api.CheckFunc{
		"postgres": a.db.PingContext,
		"redis":    func(ctx context.Context) error { return a.rdb.Ping(ctx).Err() },
	}
	if a.apiLn != nil {
		monitor := asynqmon.New(asynqmon.Options{
			RootPath:          "/monitoring",
			RedisConnOpt:      redisconn.ConnOpt{Config: a.cfg.Redis, PoolSize: monitorPoolSize},
			ReadOnly:          a.cfg.MonitoringReadOnly,
			PrometheusAddress: a.cfg.PrometheusURL,
		})
		defer monitor.Close()
		// What a publish checks, its app and event type, comes from
		// memory, kept current by Postgres notifications (and at once
		// for the changes this process makes).
		sessions := portal.NewSessions(a.db, a.publicURL())
		consumerPortal, err := portal.New(sessions, reg, eventStore, deadLetters, recoveries, a.log.With(slog.String("role", RoleAPI)), portal.Config{
			FrameAncestors: a.cfg.PortalFrameAncestors,
			Secure:         strings.HasPrefix(a.publicURL(), "https://"),
			MaxEventBytes:  a.cfg.MaxEventBytes,
		})
		if err != nil {
			return err
		}
		publishCache := eventStore.NewPublishCache(a.log.With(slog.String("role", RoleAPI)), events.PublishCacheConfig{})
		g.Go(func() error { return publishCache.Run(ctx) })
		srv := api.New(reg, eventStore, links.NewService(a.db), deadLetters, a.log, api.Config{
			Monitoring:     monitor,
			Portal:         consumerPortal.Handler(),
			PortalSessions: sessions,
			Metrics:        a.metrics,
			AdminAPIKey:    a.cfg.AdminAPIKey,
			MaxEventBytes:  a.cfg.MaxEventBytes,
			Version:        Version(),
			Checks:         checks,
			Recoveries:     recoveries,
		})
		if a.cfg.AdminAPIKey == "" {
			a.log.WarnContext(ctx, "HOOKD_ADMIN_API_KEY is empty: every /v1 request will be refused")
		}
		g.Go(func() error { return a.serveHTTP(ctx, "api", a.apiLn, srv.Handler()) })
	}
	if a.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{Registry: a.metrics}))
		if a.cfg.Pprof {
			// Profiles for `hookd bench --profile` and operators, only
			// when HOOKD_PPROF asks for them: they need no key.
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		}
		// Probes for processes without the api: they wait out a Postgres or
		// Redis outage, and /readyz says so meanwhile.
		probes := api.ProbeHandler(checks, a.log)
		mux.Handle("GET /healthz", probes)
		mux.Handle("GET /readyz", probes)
		g.Go(func() error { return a.serveHTTP(ctx, "metrics", a.metricsLn, mux) })
	}
	if a.has(RoleRelay) {
		relay := outbox.NewRelay(a.db, queue, a.log.With(slog.String("role", RoleRelay)), outbox.RelayConfig{Observer: tasks.NewRelayMetrics(a.metrics)})
		g.Go(func() error { return relay.Run(ctx) })
	}
	if a.has(RoleWorker) {
		log := a.log.With(slog.String("role", RoleWorker))
		// Endpoints and subscriptions come from memory, kept current by
		// Postgres notifications.
		cache := reg.NewCache(log, 0)
		g.Go(func() error { return cache.Run(ctx) })
		// Each event's webhook body, held once for all its deliveries.
		bodies := body.NewCache(a.db, 0)
		deliverer := delivery.New(delivery.Deps{
			Ledger:   store,
			Endpoint: cache.DeliveryEndpoint,
			Health:   reg.Health(),
			Limiter:  guard.NewRateLimiter(a.rdb),
			Gate:     gate,
			Queue:    queue,
			Bodies:   bodies,
			Retry:    queueCfg.Retry,
			Metrics:  delivery.NewMetrics(a.metrics),
		}, log, delivery.Config{
			Timeout:             a.cfg.DeliveryTimeout,
			ConnectTimeout:      a.cfg.ConnectTimeout,
			TLSTimeout:          a.cfg.TLSTimeout,
			HeaderTimeout:       a.cfg.HeaderTimeout,
			MaxRetryAfter:       a.cfg.MaxRetryAfter,
			AllowPrivateTargets: a.cfg.AllowPrivateTargets,
			UserAgent:           "hookd/" + Version(),
		})
		fan := fanout.New(fanout.Deps{
			Ledger:      store,
			Queue:       queue,
			Subscribers: cache.Subscribers,
			Bodies:      bodies,
			Deliverer:   deliverer,
			Metrics:     fanout.NewMetrics(a.metrics),
		}, log)
		w := worker.New(a.rdb, worker.Handlers{
			Fanout:           fan,
			Deliver:          deliverer,
			FIFO:             asynq.HandlerFunc(deliverer.Pump),
			RetryDeadLetters: deadLetters,
			RecoverEndpoint:  recoveries,
			DeadLettered:     deliverer.DeadLettered,
		}, log, worker.Config{
			Queue:                    queueCfg,
			Concurrency:              a.cfg.Concurrency,
			Pollers:                  a.cfg.Pollers,
			TaskCheckInterval:        a.cfg.TaskCheckInterval,
			DelayedTaskCheckInterval: a.cfg.DelayedCheck,
			ShutdownTimeout:          a.cfg.ShutdownTimeout,
		})
		g.Go(func() error { return w.Run(ctx) })
	}
	if a.has(RoleReconciler) {
		rec := repair.NewReconciler(store, queue, repair.NewMetrics(a.metrics), a.log.With(slog.String("role", RoleReconciler)), repair.ReconcilerConfig{
			Interval: a.cfg.ReconcileInterval,
			After:    a.cfg.ReconcileAfter,
		})
		g.Go(func() error { return rec.Run(ctx) })
		ret := repair.NewRetention(store, a.log.With(slog.String("role", RoleReconciler)), repair.RetentionConfig{
			Events:   a.cfg.EventRetention,
			Attempts: a.cfg.AttemptRetention,
			Interval: a.cfg.ReconcileInterval,
			Expiries: map[string]repair.Expiry{
				"idempotency keys": func(ctx context.Context) (int, error) { return eventStore.DeleteExpiredKeys(ctx, 500) },
				"portal sessions":  func(ctx context.Context) (int, error) { return portal.NewSessions(a.db, "").DeleteEnded(ctx, 500) },
			},
		})
		g.Go(func() error { return ret.Run(ctx) })
	}
	// The asynq client shares a.rdb, which Close closes: nothing to close here.
	err := g.Wait()
	a.log.InfoContext(context.WithoutCancel(ctx), "hookd stopped")
	return err
}

// serveHTTP serves h on ln until ctx is done, then shuts down gracefully.
func (a *App) serveHTTP(ctx context.Context, name string, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.InfoContext(ctx, "listening", slog.String("server", name), slog.String("addr", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("%s server: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s server shutdown: %w", name, err)
	}
	return nil
}

// Close closes the listeners and connections. Run calls it on return.
func (a *App) Close() {
	for _, ln := range []net.Listener{a.apiLn, a.metricsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if a.rdb != nil {
		_ = a.rdb.Close()
	}
	if a.db != nil {
		_ = a.db.Close()
	}
}
