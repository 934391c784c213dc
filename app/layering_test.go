package app_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
		mod + "outbox": {mod + "app", mod + "tasks", "github.com/hibiken/asynq", "github.com/redis/go-redis", "net/http"},
		mod + "tasks":  {mod + "app"},
		// The engine's ideas: the contract and the ledger below them, the
		// worker knowing handlers only as asynq.Handlers.
		mod + "tasks/ledger":     {"github.com/hibiken/asynq", "github.com/redis/go-redis", mod + "tasks/delivery", mod + "tasks/fanout", mod + "tasks/deadletter", mod + "tasks/repair", mod + "tasks/worker", mod + "tasks/guard"},
		mod + "tasks/guard":      {mod + "tasks", mod + "outbox", "github.com/uptrace/bun", "github.com/hibiken/asynq"},
		mod + "tasks/signature":  {mod + "tasks", mod + "outbox"},
		mod + "tasks/worker":     {mod + "tasks/delivery", mod + "tasks/fanout", mod + "tasks/deadletter", mod + "tasks/repair", mod + "tasks/ledger", mod + "tasks/guard", mod + "tasks/body", "github.com/uptrace/bun"},
		mod + "tasks/delivery":   {mod + "tasks/fanout", mod + "tasks/deadletter", mod + "tasks/repair", mod + "tasks/worker"},
		mod + "tasks/repair":     {mod + "tasks/fanout", mod + "tasks/delivery", mod + "tasks/deadletter", mod + "tasks/worker"},
		mod + "tasks/deadletter": {mod + "tasks/fanout", mod + "tasks/delivery", mod + "tasks/repair", mod + "tasks/worker"},
		mod + "app/links":        {mod + "tasks", mod + "app/registry", mod + "app/api", "github.com/hibiken/asynq"},
		mod + "app/registry":     {mod + "app/api", mod + "app/links", mod + "app/events"},
		mod + "app/events":       {mod + "app/api", mod + "app/links", mod + "app/registry"},
		mod + "app/filter":       {mod + "app", mod + "tasks", mod + "outbox"},
		mod + "app/operational":  {mod + "app/api", mod + "app/links", "github.com/hibiken/asynq"},
		mod + "app/resource":     {mod + "app/api", mod + "app/registry", mod + "app/events", mod + "app/links"},
		mod + "app/secretbox":    {mod + "app", mod + "tasks", mod + "outbox", "github.com/uptrace/bun"},
		mod + "app/portal":       {mod + "app/api", mod + "app/links", "github.com/hibiken/asynq"},
		mod + "app/docs":         {mod + "app/api", mod + "app/registry", mod + "app/events", mod + "tasks", mod + "outbox"},
		mod + "app/webasset":     {mod + "app", mod + "tasks", mod + "outbox", "github.com/uptrace/bun"},
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
		if pkg == mod+"tasks" {
			// The contract imports none of the ideas built on it but the
			// gate it routes by.
			for imp := range strings.FieldsSeq(imports) {
				if strings.HasPrefix(imp, mod+"tasks/") && imp != mod+"tasks/guard" {
					t.Errorf("%s imports %s", pkg, imp)
				}
			}
		}
	}
	if seen < 4 {
		t.Fatalf("checked %d packages; go list output unexpected:\n%s", seen, out)
	}
}

// engineSQL matches SQL naming one of the delivery engine's tables, or its
// mark on outbox events.
var engineSQL = regexp.MustCompile(`(?i)(\b(from|into|update|join|table)\b\s*\(?\s*"?(deliveries|delivery_attempts|dead_letter_retries|endpoint_recoveries)\b)|fanned_out_at`)

// TestEngineTablesHaveOneOwner keeps the SQL of the delivery engine's
// tables in tasks/ledger: every other package goes through its Store.
func TestEngineTablesHaveOneOwner(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	owner := filepath.Join(root, "tasks", "ledger")
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && (path == owner || strings.HasPrefix(d.Name(), ".")):
			return filepath.SkipDir
		case d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go"):
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for i, line := range strings.Split(string(src), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "//") && engineSQL.MatchString(line) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d: SQL on the engine's tables outside tasks/ledger: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked %d files; walk from %s unexpected", checked, root)
	}
}
