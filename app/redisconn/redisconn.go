// Package redisconn connects hookd to Redis in one of three modes: one
// server (HOOKD_REDIS_URL), a master found through Sentinel, or a Cluster.
// Everything else in hookd sees a redis.UniversalClient and does not know
// which.
package redisconn

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is how hookd reaches Redis.
type Mode string

// The modes.
const (
	Single   Mode = "single"
	Sentinel Mode = "sentinel"
	Cluster  Mode = "cluster"
)

// DefaultURL is the one server of Single mode when nothing is set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// pingTimeout bounds the first PING of Open.
const pingTimeout = 10 * time.Second

// clusterReloadInterval is how old a Cluster client's map of slots to
// masters may grow before it is read again, when nothing failed (go-redis'
// default is a minute). A failed call reads it again at once
// (reloadOnFailure).
const clusterReloadInterval = 10 * time.Second

// Config says where Redis is. URL is Single mode; SentinelAddrs with
// SentinelMaster is Sentinel mode; ClusterAddrs is Cluster mode. Password,
// DB and TLS apply to the last two (in Single mode the URL carries them).
type Config struct {
	URL string

	SentinelAddrs    []string
	SentinelMaster   string
	SentinelPassword string

	ClusterAddrs []string

	Password string
	DB       int
	TLS      bool
}

// Mode is the mode c selects.
func (c Config) Mode() Mode {
	switch {
	case len(c.ClusterAddrs) > 0:
		return Cluster
	case len(c.SentinelAddrs) > 0:
		return Sentinel
	}
	return Single
}

// The environment variables of each setting, which errors name.
const (
	EnvURL              = "HOOKD_REDIS_URL"
	EnvSentinelAddrs    = "HOOKD_REDIS_SENTINEL_ADDRS"
	EnvSentinelMaster   = "HOOKD_REDIS_SENTINEL_MASTER"
	EnvSentinelPassword = "HOOKD_REDIS_SENTINEL_PASSWORD"
	EnvClusterAddrs     = "HOOKD_REDIS_CLUSTER_ADDRS"
	EnvPassword         = "HOOKD_REDIS_PASSWORD"
	EnvDB               = "HOOKD_REDIS_DB"
	EnvTLS              = "HOOKD_REDIS_TLS"
)

// Check tells whether c names one mode, completely. urlSet tells that
// HOOKD_REDIS_URL was set rather than defaulted; the others count as set
// when not zero. Its errors name the variables at fault.
func (c Config) Check(urlSet bool) error {
	var modes []string
	if urlSet {
		modes = append(modes, EnvURL)
	}
	if len(c.SentinelAddrs) > 0 {
		modes = append(modes, EnvSentinelAddrs)
	}
	if len(c.ClusterAddrs) > 0 {
		modes = append(modes, EnvClusterAddrs)
	}
	if len(modes) > 1 {
		return fmt.Errorf("%s: set one Redis mode, not %d", strings.Join(modes, " and "), len(modes))
	}
	switch c.Mode() {
	case Single:
		for env, set := range map[string]bool{EnvPassword: c.Password != "", EnvDB: c.DB != 0, EnvTLS: c.TLS,
			EnvSentinelMaster: c.SentinelMaster != "", EnvSentinelPassword: c.SentinelPassword != ""} {
			if set {
				return fmt.Errorf("%s applies to Sentinel or Cluster mode; with %s, put it in the URL (rediss:// for TLS)", env, EnvURL)
			}
		}
	case Sentinel:
		if c.SentinelMaster == "" {
			return fmt.Errorf("%s: Sentinel mode needs the master's name", EnvSentinelMaster)
		}
	case Cluster:
		if c.DB != 0 {
			return fmt.Errorf("%s: a Redis Cluster has only database 0", EnvDB)
		}
		if c.SentinelMaster != "" || c.SentinelPassword != "" {
			return fmt.Errorf("%s and %s apply to Sentinel mode only", EnvSentinelMaster, EnvSentinelPassword)
		}
	}
	return nil
}

// ParseAddrs parses a comma-separated list of host:port.
func ParseAddrs(v string) ([]string, error) {
	var addrs []string
	for a := range strings.SplitSeq(v, ",") {
		a = strings.TrimSpace(a)
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return nil, fmt.Errorf("%q: want host:port", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q: want a port from 1 to 65535", a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// NewClient returns a client of c's mode with a pool of poolSize
// connections (in Cluster mode, per node); 0 keeps go-redis' default, and
// in Single mode the URL's pool_size wins. It does not connect.
func (c Config) NewClient(poolSize int) (redis.UniversalClient, error) {
	var tlsConfig *tls.Config
	if c.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	switch c.Mode() {
	case Sentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.SentinelMaster,
			SentinelAddrs:    c.SentinelAddrs,
			SentinelPassword: c.SentinelPassword,
			Password:         c.Password,
			DB:               c.DB,
			PoolSize:         poolSize,
			TLSConfig:        tlsConfig,
		}), nil
	case Cluster:
		cc := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                      c.ClusterAddrs,
			Password:                   c.Password,
			PoolSize:                   poolSize,
			TLSConfig:                  tlsConfig,
			ClusterStateReloadInterval: clusterReloadInterval,
		})
		cc.AddHook(reloadOnFailure{cc})
		return cc, nil
	}
	opt, err := redis.ParseURL(cmp.Or(c.URL, DefaultURL))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", EnvURL, err)
	}
	opt.PoolSize = cmp.Or(opt.PoolSize, poolSize)
	return redis.NewClient(opt), nil
}

// Open returns a client of c's mode that has answered a PING.
func (c Config) Open(ctx context.Context, poolSize int) (redis.UniversalClient, error) {
	rdb, err := c.NewClient(poolSize)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("connect to redis (%s): %w", c.describe(), err)
	}
	return rdb, nil
}

// describe names the variables of c's mode, for errors.
func (c Config) describe() string {
	switch c.Mode() {
	case Sentinel:
		return fmt.Sprintf("master %q through %s", c.SentinelMaster, EnvSentinelAddrs)
	case Cluster:
		return EnvClusterAddrs
	}
	return EnvURL
}

// ConnOpt is c as an asynq.RedisConnOpt, for what makes its own clients
// (Asynqmon): each call of MakeRedisClient returns a new client, which its
// caller closes.
type ConnOpt struct {
	Config   Config
	PoolSize int
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (o ConnOpt) MakeRedisClient() any {
	rdb, err := o.Config.NewClient(o.PoolSize)
	if err != nil {
		// Check and NewClient ran at start with the same Config: this is
		// a programming error.
		panic(err)
	}
	return rdb
}

// reloadOnFailure reads a Cluster's slot map again after a call fails
// for the network or because the cluster is down. go-redis reloads it on
// MOVED and ASK answers only, and otherwise once it is a
// clusterReloadInterval old: after a master dies, every call to its slots
// would fail for that long although its replica took them over seconds
// after. Reloads are coalesced by go-redis.
type reloadOnFailure struct{ c *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) check(ctx context.Context, err error) {
	if err != nil && clusterFailure(err) {
		h.c.ReloadState(ctx)
	}
}

// clusterFailure tells an error that a node is gone or the cluster is
// failing over from an answer to the call itself.
func clusterFailure(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN")
}

// SetLogger sends go-redis' own messages (a pool that cannot dial during a
// failover, a Sentinel switching masters) to log, as warnings, instead of
// unstructured lines on stderr. go-redis has one logger per process: call
// it once, from main.
func SetLogger(log *slog.Logger) { redis.SetLogger(redisLog{log}) }

// redisLog is go-redis' logger interface over slog.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", slog.String("detail", fmt.Sprintf(format, v...)))
}
