package app_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hookd/hookd/app"
)

// runtimeEnv lists the variables a hookd container may set besides
// hookd's own: the Go runtime's.
var runtimeEnv = []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK", "TZ"}

// deployedConfig runs the environment (and the flags in args) that a
// deployment file gives hookd through hookd's own configuration parser, as
// `hookd serve` would read them, and returns the configuration. It fails
// the test, naming where, when the parser refuses them or when a variable
// is one hookd never reads: a misspelt name would otherwise be ignored.
func deployedConfig(t *testing.T, where string, env map[string]string, args ...string) (app.Config, bool) {
	t.Helper()
	read := map[string]bool{}
	cfg, err := app.ParseConfig(func(k string) string {
		read[k] = true
		return env[k]
	}, args...)
	if err != nil {
		t.Errorf("%s: hookd refuses its configuration: %v", where, err)
		return app.Config{}, false
	}
	ok := true
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if !read[k] && !slices.Contains(runtimeEnv, k) {
			hint := ""
			if !strings.HasPrefix(k, "HOOKD_") {
				hint = " (hookd's variables start with HOOKD_)"
			}
			t.Errorf("%s: hookd reads no variable %s%s", where, k, hint)
			ok = false
		}
	}
	return cfg, ok
}
