package docs_test

import (
	"crypto/sha512"
	"encoding/base64"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookd/hookd/app/docs"
)

// TestCommittedAssetsMatchTheirManifest checks every committed Elements
// file against the sha384 its manifest records (which deploy/webassets.sh
// checks against the npm package of the pinned integrity): a file changed
// by hand fails here.
func TestCommittedAssetsMatchTheirManifest(t *testing.T) {
	t.Parallel()
	manifest, err := os.ReadFile(filepath.Join("assets", "ASSETS"))
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for line := range strings.Lines(string(manifest)) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "package" {
			if f[1] != "@stoplight/elements@9.0.15" || !strings.HasPrefix(f[2], "sha512-") {
				t.Errorf("package line %q: want @stoplight/elements@9.0.15 and its sha512 integrity", line)
			}
		}
		if len(f) != 2 || !strings.HasPrefix(f[0], "sha384-") {
			continue
		}
		files++
		b, err := os.ReadFile(filepath.Join("assets", filepath.Base(f[1])))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha512.Sum384(b)
		if got := "sha384-" + base64.StdEncoding.EncodeToString(sum[:]); got != f[0] {
			t.Errorf("%s: sha384 %s, the manifest says %s", f[1], got, f[0])
		}
	}
	if files < 2 {
		t.Errorf("the manifest lists %d files, want the script and the styles", files)
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	d, err := docs.New("/openapi.json", "hookd API")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	d.ServePage(rec, httptest.NewRequest(http.MethodGet, "/docs", nil))
	page := html.UnescapeString(rec.Body.String())
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(page, "//") && strings.Contains(page, "https:") {
		t.Errorf("the page names another origin:\n%s", page)
	}
	for _, f := range d.Assets().Files() {
		if strings.HasSuffix(f.Name, ".txt") {
			continue
		}
		url := d.Assets().URL(f.Name)
		if !strings.Contains(page, `"`+url+`" integrity="`+f.Integrity+`"`) {
			t.Errorf("the page does not load %s with its integrity:\n%s", url, page)
		}
		rec := httptest.NewRecorder()
		if !d.ServeAsset(rec, httptest.NewRequest(http.MethodGet, url, nil)) || rec.Code != http.StatusOK {
			t.Errorf("GET %s = %d", url, rec.Code)
		}
	}
}
