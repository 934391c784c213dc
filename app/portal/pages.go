package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/registry"
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
)

// pageSize is how many items a list page shows.
const pageSize = 50

// catalogSize is how many event types the endpoint forms offer as
// checkboxes; others are typed in.
const catalogSize = 100

// pages holds each page's template, parsed with the layout.
type pages map[string]*template.Template

func parsePages() (pages, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"inc":  func(i int) int { return i + 1 },
	}
	ps := pages{}
	for _, name := range []string{"error", "endpoints", "endpoint", "eventtypes", "deliveries", "delivery"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(embedded, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal template %s: %w", name, err)
		}
		ps[name] = t
	}
	return ps, nil
}

type asset struct{ URL, Integrity string }

// view is what the layout shows around a page.
type view struct {
	Title, Nav    string
	App           registry.App
	CSRF          string
	HXHeaders     string
	HTMX          asset
	Notice, Error string
	Data          any
}

func (p *Portal) view(r *http.Request, sess Session, title, nav string, data any) view {
	v := view{Title: title, Nav: nav, Data: data}
	if csrf, _ := r.Context().Value(csrfKey{}).(string); csrf != "" {
		v.CSRF = csrf
		h, _ := json.Marshal(map[string]string{csrfHeader: csrf})
		v.HXHeaders = string(h)
	}
	if sess.AppID != "" {
		if app, err := p.endpoints.App(r.Context(), sess.AppID); err == nil {
			v.App = app
		}
	}
	f, _ := p.htmx.File("htmx.min.js")
	v.HTMX = asset{URL: p.htmx.URL("htmx.min.js"), Integrity: f.Integrity}
	return v
}

func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	var b bytes.Buffer
	if err := p.pages[page].ExecuteTemplate(&b, "layout", v); err != nil {
		p.log.ErrorContext(r.Context(), "render portal page failed", slog.String("page", page), slog.Any("err", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// renderError shows msg on the error page, with the session's layout when
// there is one.
func (p *Portal) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	v := p.view(r, Session{}, http.StatusText(status), "", nil)
	v.Error = msg
	p.render(w, r, status, "error", v)
}

func (p *Portal) stylesheet(w http.ResponseWriter, r *http.Request) {
	b, err := embedded.ReadFile("static/portal.css")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "portal.css", time.Time{}, bytes.NewReader(b))
}

// endpointForm is the state of an endpoint's form fields.
type endpointForm struct {
	URL, Description, Other, Filter string
	Selected                        map[string]bool
	Catalog                         []events.EventType
	InCatalog                       map[string]bool
}

func (p *Portal) catalog(r *http.Request) ([]events.EventType, error) {
	pg, err := p.events.EventTypes(r.Context(), false, resource.PageQuery{Limit: catalogSize})
	if err != nil {
		return nil, err
	}
	return pg.Items, nil
}

func newEndpointForm(catalog []events.EventType, ep *registry.Endpoint) endpointForm {
	f := endpointForm{Selected: map[string]bool{}, Catalog: catalog, InCatalog: map[string]bool{}}
	for _, et := range catalog {
		f.InCatalog[et.Name] = true
	}
	if ep == nil {
		return f
	}
	f.URL, f.Description = ep.URL, ep.Description
	var other []string
	for _, t := range ep.EventTypes {
		if f.InCatalog[t] {
			f.Selected[t] = true
		} else {
			other = append(other, t)
		}
	}
	f.Other = strings.Join(other, ", ")
	if len(ep.Filter) > 0 && string(ep.Filter) != "null" {
		var b bytes.Buffer
		if json.Indent(&b, ep.Filter, "", "  ") == nil {
			f.Filter = b.String()
		}
	}
	return f
}

// parsedEndpoint is what an endpoint form says.
type parsedEndpoint struct {
	url, description string
	eventTypes       []string
	filter           json.RawMessage
}

// parseEndpointForm reads an endpoint form, whose body authenticated
// bounded.
func parseEndpointForm(r *http.Request) (parsedEndpoint, error) {
	if err := r.ParseForm(); err != nil {
		return parsedEndpoint{}, err
	}
	out := parsedEndpoint{url: strings.TrimSpace(r.PostFormValue("url")), description: r.PostFormValue("description"), eventTypes: []string{}}
	seen := map[string]bool{}
	add := func(t string) {
		if t = strings.TrimSpace(t); t != "" && !seen[t] {
			seen[t] = true
			out.eventTypes = append(out.eventTypes, t)
		}
	}
	for _, t := range r.PostForm["event_types"] {
		add(t)
	}
	for t := range strings.SplitSeq(r.PostFormValue("event_types_other"), ",") {
		add(t)
	}
	if f := strings.TrimSpace(r.PostFormValue("filter")); f != "" {
		if !json.Valid([]byte(f)) {
			return parsedEndpoint{}, resource.Invalid("filter", "is not JSON")
		}
		out.filter = json.RawMessage(f)
	}
	return out, nil
}

func pageQuery(r *http.Request) resource.PageQuery {
	return resource.PageQuery{Limit: pageSize, Cursor: r.URL.Query().Get("after")}
}

func (p *Portal) listEndpoints(w http.ResponseWriter, r *http.Request, sess Session) {
	pg, err := p.endpoints.Endpoints(r.Context(), sess.AppID, pageQuery(r))
	if err != nil {
		p.fail(w, r, err)
		return
	}
	cat, err := p.catalog(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	v := p.view(r, sess, "Endpoints", "endpoints", map[string]any{
		"Endpoints": pg.Items, "Next": pg.Next, "Form": newEndpointForm(cat, nil),
	})
	if r.URL.Query().Has("deleted") {
		v.Notice = "The endpoint was deleted."
	}
	p.render(w, r, http.StatusOK, "endpoints", v)
}

func (p *Portal) createEndpoint(w http.ResponseWriter, r *http.Request, sess Session) {
	in, err := parseEndpointForm(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	ep, _, err := p.endpoints.CreateEndpoint(r.Context(), sess.AppID, registry.EndpointInput{
		URL: in.url, Description: in.description, EventTypes: in.eventTypes, Filter: in.filter,
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"endpoints/"+url.PathEscape(ep.ID)+"?created=1", http.StatusSeeOther)
}

// showEndpoint shows an endpoint with its forms, and its secret when the
// query asks to reveal it.
func (p *Portal) showEndpoint(w http.ResponseWriter, r *http.Request, sess Session) {
	p.endpointPage(w, r, sess, nil, "")
}

// endpointPage shows an endpoint; secret, when not nil, is one just made,
// to show once.
func (p *Portal) endpointPage(w http.ResponseWriter, r *http.Request, sess Session, secret *registry.Secret, notice string) {
	id := r.PathValue("id")
	ep, err := p.endpoints.Endpoint(r.Context(), sess.AppID, id)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	cat, err := p.catalog(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	if secret == nil && q.Has("reveal") {
		s, err := p.endpoints.Secret(r.Context(), sess.AppID, id)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		secret = &s
	}
	dl, err := p.events.Deliveries(r.Context(), sess.AppID, events.DeliveryFilter{EndpointID: id}, resource.PageQuery{Limit: 20})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	v := p.view(r, sess, ep.URL, "endpoints", map[string]any{
		"Endpoint": ep, "Form": newEndpointForm(cat, &ep), "Secret": secret, "Deliveries": dl.Items,
		"TestTypes": testTypes(ep, cat),
	})
	switch {
	case notice != "":
		v.Notice = notice
	case q.Has("created"):
		v.Notice = "The endpoint was added."
	case q.Has("saved"):
		v.Notice = "Saved."
	case q.Get("sent") != "":
		v.Notice = "Test event " + q.Get("sent") + " published."
	}
	p.render(w, r, http.StatusOK, "endpoint", v)
}

// testTypes lists the event types a test event to ep may have: those it
// subscribes to first, then the rest of the catalog.
func testTypes(ep registry.Endpoint, catalog []events.EventType) []string {
	out := slices.Clone(ep.EventTypes)
	for _, et := range catalog {
		if !slices.Contains(out, et.Name) {
			out = append(out, et.Name)
		}
	}
	return out
}

func (p *Portal) updateEndpoint(w http.ResponseWriter, r *http.Request, sess Session) {
	in, err := parseEndpointForm(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	filter := in.filter
	if filter == nil {
		filter = json.RawMessage(`null`) // an emptied field removes the filter
	}
	ep, err := p.endpoints.UpdateEndpoint(r.Context(), sess.AppID, r.PathValue("id"), registry.EndpointPatch{
		URL: &in.url, Description: &in.description, EventTypes: &in.eventTypes, Filter: filter,
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"endpoints/"+url.PathEscape(ep.ID)+"?saved=1", http.StatusSeeOther)
}

func (p *Portal) setDisabled(w http.ResponseWriter, r *http.Request, sess Session, disabled bool) {
	reason := ""
	if disabled {
		reason = "disabled in the portal"
	}
	ep, err := p.endpoints.SetEndpointDisabled(r.Context(), sess.AppID, r.PathValue("id"), disabled, reason)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"endpoints/"+url.PathEscape(ep.ID)+"?saved=1", http.StatusSeeOther)
}

func (p *Portal) disableEndpoint(w http.ResponseWriter, r *http.Request, sess Session) {
	p.setDisabled(w, r, sess, true)
}

func (p *Portal) enableEndpoint(w http.ResponseWriter, r *http.Request, sess Session) {
	p.setDisabled(w, r, sess, false)
}

func (p *Portal) deleteEndpoint(w http.ResponseWriter, r *http.Request, sess Session) {
	if err := p.endpoints.DeleteEndpoint(r.Context(), sess.AppID, r.PathValue("id")); err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"endpoints?deleted=1", http.StatusSeeOther)
}

func (p *Portal) rotateSecret(w http.ResponseWriter, r *http.Request, sess Session) {
	id := r.PathValue("id")
	s, err := p.endpoints.RotateSecret(r.Context(), sess.AppID, id, registry.DefaultGracePeriod, "", "")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	w.Header().Set("HX-Push-Url", Path+"endpoints/"+url.PathEscape(id))
	p.endpointPage(w, r, sess, &s, "The secret was rotated: the previous one keeps signing for a day.")
}

func (p *Portal) sendTestEvent(w http.ResponseWriter, r *http.Request, sess Session) {
	id := r.PathValue("id")
	if _, err := p.endpoints.Endpoint(r.Context(), sess.AppID, id); err != nil {
		p.fail(w, r, err)
		return
	}
	if err := r.ParseForm(); err != nil { // bounded by authenticated to MaxEventBytes
		p.fail(w, r, err)
		return
	}
	typ := r.PostFormValue("type")
	payload := json.RawMessage(strings.TrimSpace(r.PostFormValue("payload")))
	if len(payload) == 0 {
		et, err := p.events.EventType(r.Context(), typ)
		switch {
		case err == nil:
			payload = events.Example(et.Schema)
		case errors.Is(err, resource.ErrNotFound): // no schema: an empty object
			payload = json.RawMessage(`{}`)
		default:
			p.fail(w, r, err)
			return
		}
	}
	if !json.Valid(payload) {
		p.fail(w, r, resource.Invalid("payload", "is not JSON"))
		return
	}
	ev, _, err := p.events.Publish(r.Context(), sess.AppID, events.PublishInput{Type: typ, Payload: payload})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, Path+"endpoints/"+url.PathEscape(id)+"?sent="+url.QueryEscape(ev.ID), http.StatusSeeOther)
}

// catalogEntry is an event type as the catalog page shows it.
type catalogEntry struct {
	events.EventType
	Schema, Example string
}

func indented(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

func (p *Portal) listEventTypes(w http.ResponseWriter, r *http.Request, sess Session) {
	pg, err := p.events.EventTypes(r.Context(), false, pageQuery(r))
	if err != nil {
		p.fail(w, r, err)
		return
	}
	types := make([]catalogEntry, len(pg.Items))
	for i, et := range pg.Items {
		types[i] = catalogEntry{EventType: et, Example: string(events.Example(et.Schema))}
		if len(et.Schema) > 0 && string(et.Schema) != "null" {
			types[i].Schema = indented(et.Schema)
		}
	}
	p.render(w, r, http.StatusOK, "eventtypes", p.view(r, sess, "Event catalog", "event-types", map[string]any{"Types": types, "Next": pg.Next}))
}

func (p *Portal) listDeliveries(w http.ResponseWriter, r *http.Request, sess Session) {
	q := r.URL.Query()
	f := events.DeliveryFilter{Status: q.Get("status"), EndpointID: q.Get("endpoint_id")}
	pg, err := p.events.Deliveries(r.Context(), sess.AppID, f, pageQuery(r))
	if err != nil {
		p.fail(w, r, err)
		return
	}
	self := url.Values{}
	if f.Status != "" {
		self.Set("status", f.Status)
	}
	if f.EndpointID != "" {
		self.Set("endpoint_id", f.EndpointID)
	}
	p.render(w, r, http.StatusOK, "deliveries", p.view(r, sess, "Deliveries", "deliveries", map[string]any{
		"Deliveries": pg.Items, "Next": pg.Next, "Status": f.Status, "Self": Path + "deliveries?" + self.Encode(),
	}))
}

func (p *Portal) showDelivery(w http.ResponseWriter, r *http.Request, sess Session) {
	d, err := p.events.Delivery(r.Context(), sess.AppID, r.PathValue("id"))
	if err != nil {
		p.fail(w, r, err)
		return
	}
	v := p.view(r, sess, "Delivery "+d.ID, "deliveries", map[string]any{"Delivery": d})
	if r.URL.Query().Has("retried") {
		v.Notice = "The delivery was queued again."
	}
	p.render(w, r, http.StatusOK, "delivery", v)
}

// retryDelivery retries a failed delivery of the session's app, as the
// API's retry-dead-letter does.
func (p *Portal) retryDelivery(w http.ResponseWriter, r *http.Request, sess Session) {
	d, err := p.events.Delivery(r.Context(), sess.AppID, r.PathValue("id"))
	if err != nil {
		p.fail(w, r, err)
		return
	}
	retried, err := p.retrier.Retry(r.Context(), []string{d.ID})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if len(retried) == 0 {
		p.renderError(w, r, http.StatusConflict, "The delivery is "+d.Status+", not failed: there is nothing to retry.")
		return
	}
	http.Redirect(w, r, Path+"deliveries/"+url.PathEscape(d.ID)+"?retried=1", http.StatusSeeOther)
}

// recoverEndpoint starts a recovery of the endpoint's missed events (or,
// with dry_run, counts them) from the form's since to its until.
func (p *Portal) recoverEndpoint(w http.ResponseWriter, r *http.Request, sess Session) {
	id := r.PathValue("id")
	ep, err := p.endpoints.Endpoint(r.Context(), sess.AppID, id)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	since, until, replay, err := parseRecoverForm(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if ep.Disabled && !replay.DryRun {
		p.renderError(w, r, http.StatusConflict, "The endpoint is disabled: enable it, then recover it.")
		return
	}
	var notice string
	if replay.DryRun {
		job, err := p.recoverer.Create(r.Context(), sess.AppID, id, since, until, replay)
		if err == nil {
			err = tasks.CountNow(r.Context(), tasks.DryRunWait,
				func(ctx context.Context) error { return p.recoverer.Run(ctx, &job) },
				func(ctx context.Context) error { return p.recoverer.Continue(ctx, job) })
		}
		if err != nil {
			p.fail(w, r, err)
			return
		}
		notice = fmt.Sprintf("Dry run: %d missed events would be sent. Nothing was sent.", job.Recovered)
		if job.Status != ledger.JobCompleted {
			notice = fmt.Sprintf("Dry run %s: %d missed events counted so far; the count goes on in the background.", job.ID, job.Recovered)
		}
	} else {
		job, err := p.recoverer.Start(r.Context(), sess.AppID, id, since, until, replay)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		notice = "Recovery " + job.ID + " started: the events the endpoint missed since " + since.Format(time.RFC3339) + " are on their way"
		if replay.Rate > 0 {
			notice += fmt.Sprintf(", at most %d a second", replay.Rate)
		}
		notice += "."
	}
	p.endpointPage(w, r, sess, nil, notice)
}

// parseRecoverForm reads a recover form: since (required) and until, as
// RFC 3339 or as a browser's datetime-local (UTC), dry_run and rate.
func parseRecoverForm(r *http.Request) (since, until time.Time, replay ledger.Replay, err error) {
	if err := r.ParseForm(); err != nil {
		return since, until, replay, err
	}
	if since, err = formTime(r, "since"); err != nil {
		return since, until, replay, err
	}
	if since.IsZero() {
		return since, until, replay, resource.Invalid("since", "is required")
	}
	if until, err = formTime(r, "until"); err != nil {
		return since, until, replay, err
	}
	if !until.IsZero() && !until.After(since) {
		return since, until, replay, resource.Invalid("until", "must be later than since")
	}
	replay.DryRun = r.PostFormValue("dry_run") != ""
	if v := strings.TrimSpace(r.PostFormValue("rate")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > tasks.MaxReplayRate {
			return since, until, replay, resource.Invalid("rate", "must be a whole number from 1 to %d", tasks.MaxReplayRate)
		}
		replay.Rate = n
	}
	return since, until, replay, nil
}

// formTime reads form field name as a time: RFC 3339, or a browser's
// datetime-local taken as UTC; empty is the zero time.
func formTime(r *http.Request, name string) (time.Time, error) {
	v := strings.TrimSpace(r.PostFormValue(name))
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, resource.FilterTime(name, t)
		}
	}
	return time.Time{}, resource.Invalid(name, "must be a date and time, such as 2026-01-31T09:30 (UTC)")
}
