package webasset_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"

	"github.com/hookd/hookd/app/webasset"
)

func manifestFS(file string, integrity string) fstest.MapFS {
	return fstest.MapFS{
		"ASSETS": {Data: []byte("# test\npackage lib@1.2.3 sha512-AAAA\n" + integrity + " dist/lib.js\n")},
		"lib.js": {Data: []byte(file)},
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	good := webasset.Integrity([]byte("console.log(1)"))

	t.Run("ServesAFileOfTheManifest", func(t *testing.T) {
		t.Parallel()
		s, err := webasset.Load(manifestFS("console.log(1)", good), "/x/")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.URL("lib.js"); got != "/x/1.2.3/lib.js" {
			t.Errorf("URL = %q, want /x/1.2.3/lib.js", got)
		}
		rec := httptest.NewRecorder()
		if !s.Serve(rec, httptest.NewRequest(http.MethodGet, "/x/1.2.3/lib.js", nil)) {
			t.Fatal("Serve reported false for a file of the set")
		}
		if rec.Code != http.StatusOK || rec.Body.String() != "console.log(1)" || rec.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("GET = %d %q, Cache-Control %q", rec.Code, rec.Body.String(), rec.Header().Get("Cache-Control"))
		}
		for _, target := range []string{"/x/1.2.2/lib.js", "/x/1.2.3/ASSETS", "/x/1.2.3/../lib.js", "/x/lib.js"} {
			rec := httptest.NewRecorder()
			if s.Serve(rec, httptest.NewRequest(http.MethodGet, target, nil)) {
				t.Errorf("Serve(%s) = true, want false", target)
			}
		}
		rec = httptest.NewRecorder()
		if s.Serve(rec, httptest.NewRequest(http.MethodPost, "/x/1.2.3/lib.js", nil)) {
			t.Error("Serve(POST) = true, want false")
		}
	})
	t.Run("RefusesATamperedFile", func(t *testing.T) {
		t.Parallel()
		_, err := webasset.Load(manifestFS("console.log(2)", good), "/x/")
		if !errors.Is(err, webasset.ErrTampered) {
			t.Errorf("Load = %v, want ErrTampered", err)
		}
	})
	t.Run("RefusesAMissingFile", func(t *testing.T) {
		t.Parallel()
		fsys := manifestFS("console.log(1)", good)
		delete(fsys, "lib.js")
		if _, err := webasset.Load(fsys, "/x/"); err == nil {
			t.Error("Load = nil, want an error")
		}
	})
	t.Run("RefusesAManifestWithoutPackage", func(t *testing.T) {
		t.Parallel()
		fsys := manifestFS("console.log(1)", good)
		fsys["ASSETS"] = &fstest.MapFile{Data: []byte(good + " dist/lib.js\n")}
		if _, err := webasset.Load(fsys, "/x/"); err == nil {
			t.Error("Load = nil, want an error")
		}
	})
}
