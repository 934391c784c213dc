package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// spectralAllowed lists the spectral:oas warnings that no change to the
// document can remove, by rule and JSON path ("code path.to.node"), each
// with the reason. Every other warning fails TestOpenAPILinters.
var spectralAllowed = map[string]string{
	// None: every spectral:oas warning hookd's document had was fixable.
}

// TestOpenAPILinters runs Redocly CLI (recommended rules) and Spectral
// (spectral:oas) on the OpenAPI document hookd serves, as third-party
// tooling would: any Redocly error fails, and so does any Spectral error or
// warning not in spectralAllowed. Redocly's warnings are logged. The
// linters come from deploy/oaslint.sh, which installs them when missing.
func TestOpenAPILinters(t *testing.T) {
	t.Parallel()
	bin := oasLinters(t)
	h := start(t, nil)

	dir := t.TempDir()
	resp, err := http.Get(h.base + "/openapi.json")
	if err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	doc, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json = %d, %v", resp.StatusCode, err)
	}
	files := map[string]string{
		"openapi.json": string(doc),
		// Redocly CLI sends usage data unless told not to: only loopback
		// traffic in tests.
		"redocly.yaml":  "extends:\n  - recommended\ntelemetry: off\n",
		"spectral.yaml": "extends:\n  - spectral:oas\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Redocly", func(t *testing.T) {
		out := runLinter(t, dir, filepath.Join(bin, "redocly"), "lint", "--config", "redocly.yaml", "--format", "json", "openapi.json")
		var report struct {
			Totals   struct{ Errors, Warnings int }
			Problems []struct {
				RuleID   string `json:"ruleId"`
				Severity string `json:"severity"`
				Message  string `json:"message"`
				Location []struct {
					Pointer string `json:"pointer"`
				} `json:"location"`
			} `json:"problems"`
		}
		if err := json.Unmarshal(out, &report); err != nil {
			t.Fatalf("redocly lint output: %v\n%s", err, out)
		}
		for _, p := range report.Problems {
			where := ""
			if len(p.Location) > 0 {
				where = p.Location[0].Pointer
			}
			if p.Severity == "error" {
				t.Errorf("redocly %s at %s: %s", p.RuleID, where, p.Message)
				continue
			}
			t.Logf("redocly %s %s at %s: %s", p.Severity, p.RuleID, where, p.Message)
		}
		t.Logf("redocly: %d errors, %d warnings", report.Totals.Errors, report.Totals.Warnings)
	})

	t.Run("Spectral", func(t *testing.T) {
		out := runLinter(t, dir, filepath.Join(bin, "spectral"), "lint", "--ruleset", "spectral.yaml", "--format", "json", "--quiet", "openapi.json")
		var results []struct {
			Code     string `json:"code"`
			Path     []any  `json:"path"`
			Message  string `json:"message"`
			Severity int    `json:"severity"` // 0 error, 1 warning, 2 info, 3 hint
		}
		if err := json.Unmarshal(out, &results); err != nil {
			t.Fatalf("spectral lint output: %v\n%s", err, out)
		}
		for _, r := range results {
			path := make([]string, len(r.Path))
			for i, p := range r.Path {
				b, _ := json.Marshal(p)
				path[i] = strings.Trim(string(b), `"`)
			}
			key := r.Code + " " + strings.Join(path, ".")
			switch {
			case r.Severity > 1:
				t.Logf("spectral (info) %s: %s", key, r.Message)
			case spectralAllowed[key] != "":
				t.Logf("spectral %s (allowed: %s): %s", key, spectralAllowed[key], r.Message)
			default:
				t.Errorf("spectral %s: %s", key, r.Message)
			}
		}
		t.Logf("spectral: %d results", len(results))
	})
}

// oasLinters returns the directory of the redocly and spectral commands,
// installed by deploy/oaslint.sh when missing. Where they cannot be
// installed it skips the test, unless CI is set: there it fails.
func oasLinters(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the linters are not installed")
	}
	return testTool(t, "oaslint.sh", "the OpenAPI linters", true)
}

// runLinter runs a linter in dir and returns what it wrote on stdout. The
// linters exit non-zero when they find problems: only output that is not
// JSON is a failure, which the caller reports.
func runLinter(t *testing.T, dir, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(),
		"REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_NOTIFICATIONS=true", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true",
		"NO_COLOR=1")
	if err := cmd.Run(); err != nil && !json.Valid(stdout.Bytes()) {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}
