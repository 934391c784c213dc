package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/outbox"
)

// APIKey is a key that authorizes /v1 requests. Only a hash of the key is
// stored; the key itself is shown once, at creation.
type APIKey struct {
	bun.BaseModel `bun:"table:api_keys"`

	ID   string `bun:"id,pk" json:"id"`
	Name string `bun:"name,notnull" json:"name"`
	// AppID scopes the key to one application; nil for an admin key.
	AppID *string `bun:"app_id" json:"app_id"`
	// Prefix is the start of the key, to recognize it by.
	Prefix     string     `bun:"prefix,notnull" json:"prefix"`
	Hash       []byte     `bun:"hash,notnull" json:"-"`
	CreatedAt  time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()" json:"created_at"`
	LastUsedAt *time.Time `bun:"last_used_at" json:"last_used_at"`
	RevokedAt  *time.Time `bun:"revoked_at" json:"revoked_at"`
}

// apiKeyPrefix starts every key hookd issues, so that secret scanners can
// recognize leaked ones.
const apiKeyPrefix = "hk_"

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// CreateAPIKey creates an API key named name, scoped to application appID or
// an admin key when appID is empty, and returns it with the key, which is
// not stored and cannot be read again.
func (r *Registry) CreateAPIKey(ctx context.Context, name, appID string) (APIKey, string, error) {
	name, err := validName(name)
	if err != nil {
		return APIKey{}, "", err
	}
	key := apiKeyPrefix + strings.ToLower(keyEncoding.EncodeToString(randomBytes(24)))
	sum := sha256.Sum256([]byte(key))
	k := APIKey{ID: outbox.NewID("key"), Name: name, Prefix: key[:len(apiKeyPrefix)+8], Hash: sum[:]}
	if appID != "" {
		k.AppID = &appID
	}
	if _, err := r.db.NewInsert().Model(&k).Returning("created_at").Exec(ctx); err != nil {
		if resource.SQLState(err) == resource.CodeForeignKeyViolation {
			return APIKey{}, "", resource.Invalid("app_id", "no application %s", appID)
		}
		return APIKey{}, "", fmt.Errorf("create api key: %w", err)
	}
	return k, key, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// APIKeys lists API keys, newest first, revoked ones included.
func (r *Registry) APIKeys(ctx context.Context, q resource.PageQuery) (resource.Page[APIKey], error) {
	after, err := q.Key()
	if err != nil {
		return resource.Page[APIKey]{}, err
	}
	var keys []APIKey
	sel := r.db.NewSelect().Model(&keys).OrderExpr("id DESC").Limit(q.Fetch())
	if after != "" {
		sel.Where("id < ?", after)
	}
	if err := sel.Scan(ctx); err != nil {
		return resource.Page[APIKey]{}, fmt.Errorf("list api keys: %w", err)
	}
	return resource.NewPage(q, keys, func(k APIKey) string { return k.ID }), nil
}

// APIKey returns an API key by ID.
func (r *Registry) APIKey(ctx context.Context, id string) (APIKey, error) {
	var k APIKey
	if err := r.db.NewSelect().Model(&k).Where("id = ?", id).Scan(ctx); err != nil {
		return APIKey{}, fmt.Errorf("get api key %s: %w", id, resource.NotFound(err))
	}
	return k, nil
}

// RevokeAPIKey revokes API key id; revoking twice keeps the first time.
func (r *Registry) RevokeAPIKey(ctx context.Context, id string) (APIKey, error) {
	var k APIKey
	err := r.db.NewUpdate().Model(&k).Where("id = ?", id).
		Set("revoked_at = coalesce(revoked_at, clock_timestamp())").
		Returning("*").Scan(ctx, &k)
	if err != nil {
		return APIKey{}, fmt.Errorf("revoke api key %s: %w", id, resource.NotFound(err))
	}
	return k, nil
}

// Authenticate returns the live API key key, or resource.ErrNotFound. It
// records the key's use at most once a minute.
func (r *Registry) Authenticate(ctx context.Context, key string) (APIKey, error) {
	if !strings.HasPrefix(key, apiKeyPrefix) || len(key) > 100 {
		return APIKey{}, resource.ErrNotFound
	}
	sum := sha256.Sum256([]byte(key))
	var k APIKey
	err := r.db.NewSelect().Model(&k).Where("hash = ?", sum[:]).Where("revoked_at IS NULL").Scan(ctx)
	if err != nil {
		return APIKey{}, fmt.Errorf("authenticate: %w", resource.NotFound(err))
	}
	if k.LastUsedAt == nil || time.Since(*k.LastUsedAt) > time.Minute {
		_, err := r.db.NewUpdate().Model((*APIKey)(nil)).Set("last_used_at = clock_timestamp()").Where("id = ?", k.ID).Exec(ctx)
		if err != nil {
			return APIKey{}, fmt.Errorf("record use of api key %s: %w", k.ID, err)
		}
	}
	return k, nil
}
