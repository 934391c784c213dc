// Package webasset serves third-party browser files (scripts, styles) that
// hookd embeds instead of loading them from a CDN: each set comes from one
// npm package at a pinned version, listed with the package's npm integrity
// and each file's sha384 in a manifest (ASSETS) that deploy/webassets.sh
// re-fetches and checks. It knows nothing of what the files are for.
package webasset

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// ManifestName is the name of a set's manifest in its directory.
const ManifestName = "ASSETS"

// cacheControl lets browsers keep a file for a year without asking again:
// its URL holds the package version, so another version is another URL.
const cacheControl = "public, max-age=31536000, immutable"

// File is one file of a Set.
type File struct {
	// Name is the file's name in the set's directory (its base name in
	// the package).
	Name string
	// Integrity is the file's sha384 as the manifest records it, in the
	// form of a Subresource Integrity value ("sha384-<base64>").
	Integrity string
	data      []byte
}

// Set is the files of one npm package, served under one URL prefix.
type Set struct {
	// Package is the npm package and version ("htmx.org@2.0.11").
	Package string
	// PackageIntegrity is the npm dist.integrity of the package tarball.
	PackageIntegrity string
	prefix           string
	files            map[string]File
	modTime          time.Time
}

// Load reads the set in fsys (a directory holding ASSETS and the files it
// lists), to be served under prefix ("/docs/assets/"). It fails when a file
// is missing or its sha384 differs from the manifest's: a file changed
// without deploy/webassets.sh is refused.
func Load(fsys fs.FS, prefix string) (*Set, error) {
	m, err := fs.ReadFile(fsys, ManifestName)
	if err != nil {
		return nil, fmt.Errorf("read asset manifest: %w", err)
	}
	s := &Set{prefix: prefix, files: map[string]File{}}
	sc := bufio.NewScanner(bytes.NewReader(m))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 0 || fields[0] == "#":
		case fields[0] == "package" && len(fields) == 3:
			s.Package, s.PackageIntegrity = fields[1], fields[2]
		case len(fields) == 2 && strings.HasPrefix(fields[0], "sha384-"):
			name := path.Base(fields[1])
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, fmt.Errorf("asset %s: %w", name, err)
			}
			if got := Integrity(data); got != fields[0] {
				return nil, fmt.Errorf("asset %s: sha384 %s, the manifest says %s: %w", name, got, fields[0], ErrTampered)
			}
			s.files[name] = File{Name: name, Integrity: fields[0], data: data}
		default:
			return nil, fmt.Errorf("asset manifest: cannot read line %q", sc.Text())
		}
	}
	if s.Package == "" || !strings.HasPrefix(s.PackageIntegrity, "sha512-") {
		return nil, errors.New("asset manifest: no package line with its sha512 integrity")
	}
	return s, nil
}

// ErrTampered reports a file whose hash is not the manifest's.
var ErrTampered = errors.New("asset differs from its manifest")

// Integrity returns the Subresource Integrity value of data: its sha384.
func Integrity(data []byte) string {
	sum := sha512.Sum384(data)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Files returns the set's files.
func (s *Set) Files() []File {
	out := make([]File, 0, len(s.files))
	for _, f := range s.files {
		out = append(out, f)
	}
	return out
}

// URL returns the path that serves the file name, which carries the
// package version; it panics for a name the set lacks, which is a bug of
// the page that names it.
func (s *Set) URL(name string) string {
	if _, ok := s.files[name]; !ok {
		panic("webasset: no file " + name + " in " + s.Package)
	}
	return s.prefix + s.version() + "/" + name
}

// File returns the file name, or false.
func (s *Set) File(name string) (File, bool) {
	f, ok := s.files[name]
	return f, ok
}

func (s *Set) version() string {
	_, v, _ := strings.Cut(strings.TrimPrefix(s.Package, "@"), "@")
	return v
}

// Serve serves GET and HEAD of prefix/<version>/<name>, cached for a year,
// and reports true; it writes nothing and reports false for any other
// request, for the caller to answer.
func (s *Set) Serve(w http.ResponseWriter, r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, s.prefix+s.version()+"/")
	f, found := s.files[rest]
	if !ok || !found || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	h := w.Header()
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", `"`+f.Integrity+`"`)
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if strings.HasSuffix(f.Name, ".txt") || path.Ext(f.Name) == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	http.ServeContent(w, r, f.Name, s.modTime, bytes.NewReader(f.data))
	return true
}
