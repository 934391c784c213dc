package app_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testTool runs deploy/<script>, which installs a tool the test needs
// when it is missing, and returns what the script printed: the tool's
// path or directory. Where the tool cannot be installed (exit 3) it skips
// the test, unless requiredOnCI is set and CI is: there it fails.
func testTool(t *testing.T, script, what string, requiredOnCI bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "deploy", script))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		msg := what + " cannot be installed: " + strings.TrimSpace(stderr.String())
		if requiredOnCI && os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatalf("deploy/%s: %v\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}
