package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/outbox"
)

// Bounds and default of a session's lifetime.
const (
	// DefaultSessionTTL is how long a session lasts when its creator
	// does not say.
	DefaultSessionTTL = time.Hour
	// MinSessionTTL and MaxSessionTTL bound what a creator may ask for.
	MinSessionTTL = time.Minute
	MaxSessionTTL = 7 * 24 * time.Hour
)

// tokenPrefix starts every session token, so that one found in a log is
// recognized.
const tokenPrefix = "hkp_"

// tokenBytes is how much randomness a token carries.
const tokenBytes = 32

// LoginPath is the portal's page that exchanges a session's token, in its
// query, for the session cookie.
const LoginPath = Path + "login"

// Session is a portal session as its creator sees it: never its token.
type Session struct {
	bun.BaseModel `bun:"table:portal_sessions"`

	ID        string     `bun:"id,pk" json:"id"`
	AppID     string     `bun:"app_id,notnull" json:"app_id"`
	TokenHash []byte     `bun:"token_hash,notnull" json:"-"`
	CreatedAt time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	ExpiresAt time.Time  `bun:"expires_at,notnull" json:"expires_at"`
	RevokedAt *time.Time `bun:"revoked_at" json:"revoked_at"`
}

// Link is a new session with the URL that opens it.
type Link struct {
	Session
	// URL opens the portal: LoginPath under the public URL, with the
	// session's token.
	URL string
}

// Sessions stores portal sessions; it owns the portal_sessions table.
type Sessions struct {
	db        *bun.DB
	publicURL string
}

// NewSessions returns the store of sessions whose links start with
// publicURL (hookd's public base URL, "https://hooks.example.com").
func NewSessions(db *bun.DB, publicURL string) *Sessions {
	return &Sessions{db: db, publicURL: strings.TrimSuffix(publicURL, "/")}
}

// CheckTTL refuses a lifetime out of [MinSessionTTL, MaxSessionTTL].
func CheckTTL(ttl time.Duration) error {
	if ttl < MinSessionTTL || ttl > MaxSessionTTL {
		return resource.Invalid("expires_in_seconds", "must be between %d and %d seconds", int(MinSessionTTL.Seconds()), int(MaxSessionTTL.Seconds()))
	}
	return nil
}

// Open creates a session of application appID lasting ttl and returns it
// with the link that opens it; the token is in the link only.
func (s *Sessions) Open(ctx context.Context, appID string, ttl time.Duration) (Link, error) {
	if err := CheckTTL(ttl); err != nil {
		return Link{}, err
	}
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	sess := Session{ID: outbox.NewID("pses"), AppID: appID, TokenHash: sum[:]}
	_, err := s.db.NewInsert().Model(&sess).
		Value("expires_at", "clock_timestamp() + ? * interval '1 second'", int64(ttl/time.Second)).
		Returning("created_at, expires_at").Exec(ctx)
	if err != nil {
		if resource.SQLState(err) == resource.CodeForeignKeyViolation {
			return Link{}, fmt.Errorf("open portal session of %s: %w", appID, resource.ErrNotFound)
		}
		return Link{}, fmt.Errorf("open portal session of %s: %w", appID, err)
	}
	return Link{Session: sess, URL: s.publicURL + LoginPath + "?" + url.Values{"token": {token}}.Encode()}, nil
}

// Revoke ends session id of application appID at once; revoking twice
// keeps the first time. Another application's session is not found.
func (s *Sessions) Revoke(ctx context.Context, appID, id string) (Session, error) {
	var sess Session
	err := s.db.NewUpdate().Model(&sess).Where("id = ? AND app_id = ?", id, appID).
		Set("revoked_at = coalesce(revoked_at, clock_timestamp())").
		Returning("*").Scan(ctx, &sess)
	if err != nil {
		return Session{}, fmt.Errorf("revoke portal session %s: %w", id, resource.NotFound(err))
	}
	return sess, nil
}

// RevokeAll ends every live session of application appID and returns how
// many it ended.
func (s *Sessions) RevokeAll(ctx context.Context, appID string) (int, error) {
	res, err := s.db.NewUpdate().Model((*Session)(nil)).
		Set("revoked_at = clock_timestamp()").
		Where("app_id = ? AND revoked_at IS NULL AND expires_at > clock_timestamp()", appID).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("revoke portal sessions of %s: %w", appID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// errNoSession means a token opens no live session.
var errNoSession = errors.New("no live portal session")

// live returns the live session whose token is token.
func (s *Sessions) live(ctx context.Context, token string) (Session, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 100 {
		return Session{}, errNoSession
	}
	sum := sha256.Sum256([]byte(token))
	var sess Session
	err := s.db.NewSelect().Model(&sess).
		Where("token_hash = ? AND revoked_at IS NULL AND expires_at > clock_timestamp()", sum[:]).Scan(ctx)
	if err != nil {
		if errors.Is(resource.NotFound(err), resource.ErrNotFound) {
			return Session{}, errNoSession
		}
		return Session{}, fmt.Errorf("find portal session: %w", err)
	}
	return sess, nil
}

// endedKeep is how long an ended (expired or revoked) session is kept
// before DeleteEnded deletes it: long enough to tell, in the table, why a
// link stopped working.
const endedKeep = 24 * time.Hour

// DeleteEnded deletes the sessions that ended more than endedKeep ago, at
// most batch per statement, and returns how many it deleted.
func (s *Sessions) DeleteEnded(ctx context.Context, batch int) (int, error) {
	keep := fmt.Sprintf("%d seconds", int(endedKeep.Seconds()))
	total := 0
	for {
		res, err := s.db.NewRaw(`DELETE FROM portal_sessions WHERE id IN (
				SELECT id FROM portal_sessions
				WHERE expires_at < clock_timestamp() - ?::interval OR revoked_at < clock_timestamp() - ?::interval
				LIMIT ? FOR UPDATE SKIP LOCKED)`,
			keep, keep, batch).Exec(ctx)
		if err != nil {
			return total, fmt.Errorf("delete ended portal sessions: %w", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if int(n) < batch {
			return total, nil
		}
	}
}
