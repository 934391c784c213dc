package app_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps dependencies flowing one way: cmd -> app -> {tasks,
// outbox}, tasks -> outbox, and business modules -> outbox only.
func TestLayering(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps=false", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "github.com/hookd/hookd/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/hookd/hookd/"
	forbidden := map[string][]string{
		mod + "outbox":       {mod + "app", mod + "tasks", "github.com/hibiken/asynq", "github.com/redis/go-redis", "net/http"},
		mod + "tasks":        {mod + "app"},
		mod + "app/links":    {mod + "tasks", mod + "app/registry", mod + "app/api", "github.com/hibiken/asynq"},
		mod + "app/registry": {mod + "app/api", mod + "app/links", mod + "app/events"},
		mod + "app/events":   {mod + "app/api", mod + "app/links", mod + "app/registry"},
		mod + "app/filter":   {mod + "app", mod + "tasks", mod + "outbox"},
		mod + "app/resource": {mod + "app/api", mod + "app/registry", mod + "app/events", mod + "app/links"},
	}
	seen := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		for prefix, bad := range forbidden {
			if pkg != prefix && !strings.HasPrefix(pkg, prefix+"/") {
				continue
			}
			seen++
			for imp := range strings.FieldsSeq(imports) {
				for _, b := range bad {
					if imp == b || strings.HasPrefix(imp, b+"/") {
						t.Errorf("%s imports %s", pkg, imp)
					}
				}
			}
		}
		if pkg != mod+"cmd/hookd" && strings.Contains(" "+imports+" ", " "+mod+"app ") {
			t.Errorf("%s imports app; only cmd/hookd may", pkg)
		}
	}
	if seen < 4 {
		t.Fatalf("checked %d packages; go list output unexpected:\n%s", seen, out)
	}
}
