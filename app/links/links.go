// Package links is the link-shortener business module: short links, their
// clicks, and the link.clicked fact it publishes to the outbox in the same
// transaction as each click. It knows nothing of webhooks.
package links

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/outbox"
)

// TopicClicked is the event type published for each click.
const TopicClicked = "link.clicked"

// Link is a short code that redirects to a URL.
type Link struct {
	bun.BaseModel `bun:"table:links"`

	ID        string    `bun:"id,pk" json:"id"`
	AppID     string    `bun:"app_id,notnull" json:"app_id"`
	Code      string    `bun:"code,notnull" json:"code"`
	URL       string    `bun:"url,notnull" json:"url"`
	CreatedAt time.Time `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
}

type click struct {
	bun.BaseModel `bun:"table:clicks"`

	ID        int64     `bun:"id,pk,autoincrement"`
	LinkID    string    `bun:"link_id,notnull"`
	ClickedAt time.Time `bun:"clicked_at,notnull"`
	UserAgent string    `bun:"user_agent,notnull"`
	Referer   string    `bun:"referer,notnull"`
}

// Clicked is the data of a link.clicked event.
type Clicked struct {
	LinkID    string    `json:"link_id"`
	Code      string    `json:"code"`
	URL       string    `json:"url"`
	ClickedAt time.Time `json:"clicked_at"`
	UserAgent string    `json:"user_agent"`
	Referer   string    `json:"referer"`
}

// Visit describes who followed a link.
type Visit struct {
	UserAgent string
	Referer   string
}

// Service stores links and records clicks.
type Service struct {
	db *bun.DB
}

// NewService returns a Service on db.
func NewService(db *bun.DB) *Service { return &Service{db: db} }

var codePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Create makes a short link of app appID to rawURL. An empty code gets a
// random one; a taken code is a resource.ErrConflict.
func (s *Service) Create(ctx context.Context, appID, rawURL, code string) (Link, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(rawURL) > 2048 {
		return Link{}, resource.Invalid("url", "must be an absolute http(s) URL of at most 2048 characters")
	}
	random := code == ""
	if !random && !codePattern.MatchString(code) {
		return Link{}, resource.Invalid("code", "must be 1 to 64 letters, digits, '-' or '_'")
	}
	for range 5 {
		if random {
			code = rand.Text()[:8]
		}
		l := Link{ID: outbox.NewID("lnk"), AppID: appID, Code: code, URL: rawURL}
		_, err = s.db.NewInsert().Model(&l).Returning("created_at").Exec(ctx)
		state := resource.SQLState(err)
		switch {
		case err == nil:
			return l, nil
		case state == resource.CodeForeignKeyViolation:
			return Link{}, fmt.Errorf("create link: app %s: %w", appID, resource.ErrNotFound)
		case state == resource.CodeUniqueViolation && random:
			continue // another random code
		case state == resource.CodeUniqueViolation:
			return Link{}, fmt.Errorf("create link: code %q is taken: %w", code, resource.ErrConflict)
		default:
			return Link{}, fmt.Errorf("create link: %w", err)
		}
	}
	return Link{}, fmt.Errorf("create link: no free random code: %w", err)
}

// Click records a visit of the link with the given code and publishes
// link.clicked, in one transaction, and returns the URL to redirect to. An
// unknown code is a resource.ErrNotFound and records nothing.
func (s *Service) Click(ctx context.Context, code string, v Visit) (string, error) {
	var target string
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var l Link
		if err := tx.NewSelect().Model(&l).Where("code = ?", code).Scan(ctx); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return resource.ErrNotFound
			}
			return err
		}
		c := click{LinkID: l.ID, ClickedAt: time.Now().UTC(), UserAgent: truncate(v.UserAgent, 512), Referer: truncate(v.Referer, 2048)}
		if _, err := tx.NewInsert().Model(&c).Exec(ctx); err != nil {
			return fmt.Errorf("insert click: %w", err)
		}
		data, err := encodeClicked(Clicked{
			LinkID: l.ID, Code: l.Code, URL: l.URL,
			ClickedAt: c.ClickedAt, UserAgent: c.UserAgent, Referer: c.Referer,
		})
		if err != nil {
			return err
		}
		target = l.URL
		return outbox.Publish(ctx, tx, &outbox.Message{Tenant: l.AppID, Topic: TopicClicked, Payload: data})
	})
	if err != nil {
		return "", fmt.Errorf("click %q: %w", code, err)
	}
	return target, nil
}

// encodeClicked returns the JSON of c with its characters as they are:
// json.Marshal would escape the & of a query string as \u0026.
func encodeClicked(c Clicked) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode click: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// truncate makes s valid UTF-8 and cuts it to at most n bytes without
// splitting a character.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
