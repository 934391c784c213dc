// Package docs serves the API reference page (/docs): Stoplight Elements
// rendering the OpenAPI document, with the Elements files embedded in the
// binary (assets/, pinned and checked by assets/ASSETS), so that the page
// works without the internet. It must not import the api package.
package docs

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"

	"github.com/hookd/hookd/app/webasset"
)

//go:embed assets
var embedded embed.FS

// AssetsPath is where the Elements files are served, under a directory
// named after their version.
const AssetsPath = "/docs/assets/"

// contentSecurityPolicy lets the page load its script and styles from this
// origin only, and fetch only from it (the document, "try it"). Elements
// sets inline styles, hence 'unsafe-inline' for styles (never scripts).
const contentSecurityPolicy = "default-src 'none'; base-uri 'none'; connect-src 'self'; font-src 'self' data:; " +
	"form-action 'none'; frame-ancestors 'none'; img-src 'self' data:; script-src 'self'; style-src 'self' 'unsafe-inline'"

var pageTemplate = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="referrer" content="no-referrer">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{{.Title}}</title>
    <link rel="stylesheet" href="{{.Styles.URL}}" integrity="{{.Styles.Integrity}}">
    <script src="{{.Script.URL}}" integrity="{{.Script.Integrity}}"></script>
  </head>
  <body style="height: 100vh;">
    <elements-api apiDescriptionUrl="{{.Document}}" router="hash" layout="sidebar" tryItCredentialsPolicy="same-origin"></elements-api>
  </body>
</html>
`))

type asset struct{ URL, Integrity string }

// Docs serves the reference page and its assets.
type Docs struct {
	assets *webasset.Set
	page   []byte
}

// New returns the page rendering the OpenAPI document at documentURL
// ("/openapi.json"), titled title.
func New(documentURL, title string) (*Docs, error) {
	sub, err := fs.Sub(embedded, "assets")
	if err != nil {
		return nil, fmt.Errorf("docs assets: %w", err)
	}
	set, err := webasset.Load(sub, AssetsPath)
	if err != nil {
		return nil, fmt.Errorf("docs assets: %w", err)
	}
	of := func(name string) asset {
		f, _ := set.File(name)
		return asset{URL: set.URL(name), Integrity: f.Integrity}
	}
	var b bytes.Buffer
	err = pageTemplate.Execute(&b, map[string]any{
		"Title": title, "Document": documentURL,
		"Script": of("web-components.min.js"), "Styles": of("styles.min.css"),
	})
	if err != nil {
		return nil, fmt.Errorf("docs page: %w", err)
	}
	return &Docs{assets: set, page: b.Bytes()}, nil
}

// Assets returns the embedded Elements files.
func (d *Docs) Assets() *webasset.Set { return d.assets }

// ServePage writes the reference page.
func (d *Docs) ServePage(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(d.page)
}

// ServeAsset serves one of the Elements files and reports true, or writes
// nothing and reports false when the request names none.
func (d *Docs) ServeAsset(w http.ResponseWriter, r *http.Request) bool {
	return d.assets.Serve(w, r)
}
