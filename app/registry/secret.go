package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks/signature"
)

type endpointSecret struct {
	bun.BaseModel `bun:"table:endpoint_secrets"`

	ID         int64      `bun:"id,pk,autoincrement"`
	EndpointID string     `bun:"endpoint_id,notnull"`
	Secret     string     `bun:"secret,notnull"`
	CreatedAt  time.Time  `bun:"created_at,nullzero,notnull,default:clock_timestamp()"`
	ExpiresAt  *time.Time `bun:"expires_at"`
}

// Secret is an endpoint's current signing secret.
type Secret struct {
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
}

// Grace periods of a secret rotation.
const (
	DefaultGracePeriod = 24 * time.Hour
	MaxGracePeriod     = 7 * 24 * time.Hour
)

// MaxLiveSecrets is how many secrets of an endpoint sign its deliveries at
// most: the current one and the two most recent ones still in their grace
// period. A rotation that would leave more ends the grace of the oldest at
// once, and deliveries never sign with more (a signature header stays
// small).
const MaxLiveSecrets = 3

// Secret returns the newest live signing secret of endpoint id of app appID.
func (r *Registry) Secret(ctx context.Context, appID, id string) (Secret, error) {
	if _, err := r.Endpoint(ctx, appID, id); err != nil {
		return Secret{}, err
	}
	var s endpointSecret
	err := r.db.NewSelect().Model(&s).
		Where("endpoint_id = ?", id).
		Where("expires_at IS NULL OR expires_at > clock_timestamp()").
		OrderExpr("id DESC").Limit(1).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return Secret{}, fmt.Errorf("endpoint %s has no live secret: %w", id, resource.ErrNotFound)
	}
	if err != nil {
		return Secret{}, fmt.Errorf("get secret of endpoint %s: %w", id, err)
	}
	return Secret{Secret: s.Secret, CreatedAt: s.CreatedAt}, nil
}

// RotateSecret gives endpoint id of app appID a new signing secret (secret,
// or a random one when empty), and returns it. The current secret keeps
// signing, next to the new one, for grace; then it expires. Secrets retired
// by earlier rotations keep their own grace periods, but no more than
// MaxLiveSecrets sign: the oldest still in grace stop at once so that the
// new secret and the two most recent others remain.
func (r *Registry) RotateSecret(ctx context.Context, appID, id string, grace time.Duration, secret string) (Secret, error) {
	if grace < 0 || grace > MaxGracePeriod {
		return Secret{}, resource.Invalid("grace_period_seconds", "must be between 0 and %d", int(MaxGracePeriod.Seconds()))
	}
	if secret == "" {
		secret = signature.NewSecret()
	} else if key, err := signature.ParseSecret(secret); err != nil || len(key) < 24 || len(key) > 64 {
		return Secret{}, resource.Invalid("secret", "must be whsec_ followed by the base64 of 24 to 64 random bytes")
	}
	s := endpointSecret{EndpointID: id, Secret: secret}
	err := r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// Lock the endpoint so that concurrent rotations queue up.
		var epID string
		err := tx.NewSelect().Model((*Endpoint)(nil)).Column("id").Where("app_id = ? AND id = ?", appID, id).For("UPDATE").Scan(ctx, &epID)
		if err != nil {
			return fmt.Errorf("lock endpoint %s: %w", id, resource.NotFound(err))
		}
		_, err = tx.NewUpdate().Model((*endpointSecret)(nil)).
			Set("expires_at = clock_timestamp() + ?::interval", fmt.Sprintf("%d microseconds", grace.Microseconds())).
			Where("endpoint_id = ? AND expires_at IS NULL", id).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("retire current secret: %w", err)
		}
		if _, err := tx.NewInsert().Model(&s).Returning("created_at").Exec(ctx); err != nil {
			return fmt.Errorf("insert secret: %w", err)
		}
		// Keep the newest live secrets; the others are expired or past the
		// limit.
		live := tx.NewSelect().Model((*endpointSecret)(nil)).Column("id").
			Where("endpoint_id = ?", id).
			Where("expires_at IS NULL OR expires_at > clock_timestamp()").
			OrderExpr("id DESC").Limit(MaxLiveSecrets)
		_, err = tx.NewDelete().Model((*endpointSecret)(nil)).
			Where("endpoint_id = ?", id).
			Where("id NOT IN (?)", live).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("delete expired secrets: %w", err)
		}
		_, err = tx.NewUpdate().Model((*Endpoint)(nil)).Set("updated_at = clock_timestamp()").Where("id = ?", id).Exec(ctx)
		return err
	})
	if err != nil {
		return Secret{}, fmt.Errorf("rotate secret of endpoint %s: %w", id, err)
	}
	return Secret{Secret: s.Secret, CreatedAt: s.CreatedAt}, nil
}
