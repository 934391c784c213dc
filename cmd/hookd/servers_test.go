package main_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// The fault suite restarts and flushes its Redis and Postgres: it runs
// them privately, on loopback ports of their own, so that the shared
// services and the other tests never notice.

// freePort returns a loopback TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// privateRedis is a redis-server of the test's own, without persistence.
type privateRedis struct {
	port  int
	dir   string
	extra []string // more arguments of redis-server
	cmd   *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	r := &privateRedis{port: freePort(t), dir: t.TempDir()}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

// start runs redis-server on r's port and waits until it answers. It runs
// with noeviction, as production must: evicted keys would strand tasks.
func (r *privateRedis) start() error {
	r.cmd = exec.Command("redis-server", append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--maxmemory-policy", "noeviction"}, r.extra...)...)
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server (deploy/services.sh installs it): %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.cli("PING") != "PONG" {
		if time.Now().After(deadline) {
			return fmt.Errorf("private redis on port %d did not answer", r.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func (r *privateRedis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *privateRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *privateRedis) env() []string { return []string{"HOOKD_REDIS_URL=" + r.url()} }

func (r *privateRedis) connOpt() asynq.RedisConnOpt { return asynq.RedisClientOpt{Addr: r.addr()} }

func (r *privateRedis) cli(args ...string) string {
	out, _ := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(r.port)}, args...)...).Output()
	return string(bytes.TrimSpace(out))
}

func (r *privateRedis) stop() { r.signal(syscall.SIGTERM) }

// kill stops r with SIGKILL: no shutdown at all.
func (r *privateRedis) kill() { r.signal(syscall.SIGKILL) }

func (r *privateRedis) signal(sig syscall.Signal) {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Signal(sig)
		_ = r.cmd.Wait()
	}
}

// privatePostgres is a PostgreSQL cluster of the test's own, made with the
// installed initdb and run with pg_ctl, without fsync: it is thrown away.
type privatePostgres struct {
	t    *testing.T
	bin  string // the directory holding initdb, pg_ctl and postgres
	dir  string // data in dir/data, the socket and the log in dir
	port int
	as   []string // runs a command as the cluster's owner
}

// startPrivatePostgres creates and starts a cluster with a trusted
// superuser "hookd" and a database "hookd".
func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	p := &privatePostgres{t: t, bin: postgresBinDir(t), port: freePort(t)}
	// Postgres refuses to run as root: as root, the cluster belongs to the
	// postgres user, in a directory it can reach (t.TempDir is private).
	dir, err := os.MkdirTemp("", "hookd-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user that the PostgreSQL package creates (deploy/services.sh installs it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.as = []string{"runuser", "-u", "postgres", "--"}
	}
	if out, err := p.run("initdb", "-D", p.data(), "-U", "hookd", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = p.run("pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop") })
	if out, err := exec.Command(filepath.Join(p.bin, "createdb"), "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "hookd", "hookd").CombinedOutput(); err != nil {
		t.Fatalf("createdb: %v\n%s", err, out)
	}
	return p
}

// postgresBinDir finds the installed PostgreSQL's programs: on PATH, or
// where Debian's packages put them.
func postgresBinDir(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			return filepath.Dir(real)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // highest version first
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	t.Fatal("no initdb: install PostgreSQL (deploy/services.sh does)")
	return ""
}

func (p *privatePostgres) data() string { return filepath.Join(p.dir, "data") }

func (p *privatePostgres) url() string {
	return fmt.Sprintf("postgres://hookd@127.0.0.1:%d/hookd?sslmode=disable", p.port)
}

func (p *privatePostgres) run(prog string, args ...string) ([]byte, error) {
	argv := append(append(slices.Clone(p.as), filepath.Join(p.bin, prog)), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// start starts the cluster and waits until it accepts connections.
func (p *privatePostgres) start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60", p.port, p.dir)
	if out, err := p.run("pg_ctl", "-D", p.data(), "-l", filepath.Join(p.dir, "log"), "-o", opts, "-w", "-t", "30", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return nil
}

// stop stops the cluster in fast mode: sessions are cut, open transactions
// roll back, as when an operator restarts Postgres.
func (p *privatePostgres) stop() error {
	if out, err := p.run("pg_ctl", "-D", p.data(), "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}
