package registry

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/app/secretbox"
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

// Secret is an endpoint's current signing key. For SchemeEd25519 it shows
// only the public key, but when the key has just been made.
type Secret struct {
	Secret          string    `json:"secret,omitempty" doc:"The signing key: for hmac-sha256 the whsec_ secret; for ed25519 the whsk_ private key, only in the response of the rotation that made it, never again."`
	SignatureScheme string    `json:"signature_scheme" enum:"hmac-sha256,ed25519" doc:"How the key signs: hmac-sha256 (v1) or ed25519 (v1a)."`
	PublicKey       string    `json:"public_key,omitempty" doc:"For ed25519: the public key (whpk_...) that verifies the key's v1a signatures."`
	CreatedAt       time.Time `json:"created_at"`
}

// Signature schemes of an endpoint.
const (
	// SchemeHMAC signs with HMAC-SHA256 ("v1," signatures) under a
	// "whsec_" secret shared with the receiver.
	SchemeHMAC = "hmac-sha256"
	// SchemeEd25519 signs with ed25519 ("v1a," signatures) under a "whsk_"
	// private key; the receiver verifies with its "whpk_" public key.
	SchemeEd25519 = "ed25519"
)

// validScheme returns the scheme named s, SchemeHMAC for "".
func validScheme(s string) (string, error) {
	switch s {
	case "", SchemeHMAC:
		return SchemeHMAC, nil
	case SchemeEd25519:
		return s, nil
	}
	return "", resource.Invalid("signature_scheme", "must be %s or %s", SchemeHMAC, SchemeEd25519)
}

// newKey returns a new random key of scheme in its text form and, for
// ed25519, its public key.
func newKey(scheme string) (secret string, pub *string) {
	if scheme == SchemeEd25519 {
		secret = signature.NewPrivateKey()
		return secret, ptr(publicKeyOf(secret))
	}
	return signature.NewSecret(), nil
}

// schemeOf returns the scheme of a stored key, told by its prefix.
func schemeOf(secret string) string {
	if strings.HasPrefix(secret, signature.PrivateKeyPrefix) {
		return SchemeEd25519
	}
	return SchemeHMAC
}

// publicKeyOf returns the "whpk_" public key of a stored "whsk_" key, or ""
// should it not parse.
func publicKeyOf(secret string) string {
	priv, err := signature.ParsePrivateKey(secret)
	if err != nil {
		return ""
	}
	return signature.PublicKey(priv)
}

// shown returns s as an API response shows it: an ed25519 key by its public
// key only, unless reveal (the response of the request that made it).
func shown(secret string, createdAt time.Time, reveal bool) Secret {
	s := Secret{SignatureScheme: schemeOf(secret), CreatedAt: createdAt}
	if s.SignatureScheme == SchemeHMAC || reveal {
		s.Secret = secret
	}
	if s.SignatureScheme == SchemeEd25519 {
		s.PublicKey = publicKeyOf(secret)
	}
	return s
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

// Secret returns the newest live signing secret of endpoint id of app
// appID; for an ed25519 key, only its public key.
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
	secret, err := r.openSecret(id, s)
	if err != nil {
		return Secret{}, err
	}
	return shown(secret, s.CreatedAt, false), nil
}

// RotateSecret gives endpoint id of app appID a new signing key of scheme
// (secret, or a random one when empty), and returns it, an ed25519 private
// key included. An empty scheme is that of secret, or else the endpoint's.
// The endpoint's scheme becomes the new key's. The current key keeps
// signing, next to the new one, for grace; then it expires. Secrets retired
// by earlier rotations keep their own grace periods, but no more than
// MaxLiveSecrets sign: the oldest still in grace stop at once so that the
// new secret and the two most recent others remain.
func (r *Registry) RotateSecret(ctx context.Context, appID, id string, grace time.Duration, secret, scheme string) (Secret, error) {
	if grace < 0 || grace > MaxGracePeriod {
		return Secret{}, resource.Invalid("grace_period_seconds", "must be between 0 and %d", int(MaxGracePeriod.Seconds()))
	}
	if scheme != "" {
		if _, err := validScheme(scheme); err != nil {
			return Secret{}, err
		}
	}
	if secret != "" {
		given := schemeOf(secret)
		if scheme != "" && scheme != given {
			return Secret{}, resource.Invalid("secret", "must be a key of the signature_scheme %s", scheme)
		}
		scheme = given
		if given == SchemeEd25519 {
			if _, err := signature.ParsePrivateKey(secret); err != nil {
				return Secret{}, resource.Invalid("secret", "must be whsk_ followed by the base64 of a 32-byte ed25519 seed or 64-byte private key")
			}
		} else if key, err := signature.ParseSecret(secret); err != nil || len(key) < 24 || len(key) > 64 {
			return Secret{}, resource.Invalid("secret", "must be whsec_ followed by the base64 of 24 to 64 random bytes")
		}
	}
	var created time.Time
	err := r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// Lock the endpoint so that concurrent rotations queue up.
		var current string
		err := tx.NewSelect().Model((*Endpoint)(nil)).Column("signature_scheme").Where("app_id = ? AND id = ?", appID, id).For("UPDATE").Scan(ctx, &current)
		if err != nil {
			return fmt.Errorf("lock endpoint %s: %w", id, resource.NotFound(err))
		}
		var pub *string
		if secret == "" {
			secret, pub = newKey(cmp.Or(scheme, current))
		} else if schemeOf(secret) == SchemeEd25519 {
			pub = ptr(publicKeyOf(secret))
		}
		_, err = tx.NewUpdate().Model((*endpointSecret)(nil)).
			Set("expires_at = clock_timestamp() + ?::interval", fmt.Sprintf("%d microseconds", grace.Microseconds())).
			Where("endpoint_id = ? AND expires_at IS NULL", id).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("retire current secret: %w", err)
		}
		if created, err = r.insertSecret(ctx, tx, id, secret); err != nil {
			return err
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
		_, err = tx.NewUpdate().Model((*Endpoint)(nil)).Set("updated_at = clock_timestamp()").
			Set("signature_scheme = ?", schemeOf(secret)).Set("public_key = ?", pub).
			Where("id = ?", id).Exec(ctx)
		return err
	})
	if err != nil {
		return Secret{}, fmt.Errorf("rotate secret of endpoint %s: %w", id, err)
	}
	return shown(secret, created, true), nil
}

// secretAD is the identity a stored key is sealed to: a sealed key copied
// to another row, of this endpoint or another, does not open.
func secretAD(endpointID string, id int64) []byte {
	return fmt.Appendf(nil, "endpoint_secrets:%s:%d", endpointID, id)
}

// insertSecret stores secret as a new key of endpoint endpointID, sealed
// when Config.Secrets is set, and returns when it was made. The row's id is
// drawn first: the seal is bound to it.
func (r *Registry) insertSecret(ctx context.Context, tx bun.Tx, endpointID, secret string) (time.Time, error) {
	var id int64
	if err := tx.NewRaw("SELECT nextval(pg_get_serial_sequence('endpoint_secrets', 'id'))").Scan(ctx, &id); err != nil {
		return time.Time{}, fmt.Errorf("draw secret id: %w", err)
	}
	stored, err := r.cfg.Secrets.Seal(secret, secretAD(endpointID, id))
	if err != nil {
		return time.Time{}, err
	}
	var created time.Time
	err = tx.NewRaw("INSERT INTO endpoint_secrets (id, endpoint_id, secret) OVERRIDING SYSTEM VALUE VALUES (?, ?, ?) RETURNING created_at", id, endpointID, stored).Scan(ctx, &created)
	if err != nil {
		return time.Time{}, fmt.Errorf("insert secret: %w", err)
	}
	return created, nil
}

// openSecret returns the key a stored row holds, opened when sealed.
func (r *Registry) openSecret(endpointID string, s endpointSecret) (string, error) {
	secret, err := r.cfg.Secrets.Open(s.Secret, secretAD(endpointID, s.ID))
	if err != nil {
		return "", fmt.Errorf("open secret %d of endpoint %s: %w", s.ID, endpointID, err)
	}
	return secret, nil
}

// sealBatch is how many rows SealSecrets reads at a time.
const sealBatch = 500

// SealSecrets seals the stored secrets with the first key of
// Config.Secrets: the signing keys, and the client keys and client secrets
// of endpoints; the plain ones, or with all every one not already sealed
// by that key (a key rotation). It is idempotent and safe to run from
// several processes at once: each value is replaced only if it still holds
// what was read. It returns how many values it sealed; a value it cannot
// open (sealed by a key the ring lacks) stops it with an error.
func (r *Registry) SealSecrets(ctx context.Context, all bool) (int, error) {
	ring := r.cfg.Secrets
	if ring == nil {
		return 0, errors.New("seal secrets: no key")
	}
	skip := secretbox.Prefix
	if all {
		skip = ring.CurrentPrefix()
	}
	n, err := r.sealSigningKeys(ctx, skip)
	if err != nil {
		return n, err
	}
	m, err := r.sealEndpointColumns(ctx, skip)
	return n + m, err
}

// sealSigningKeys seals the signing keys not starting with skip.
func (r *Registry) sealSigningKeys(ctx context.Context, skip string) (int, error) {
	ring := r.cfg.Secrets
	var after int64
	n := 0
	for {
		var rows []endpointSecret
		err := r.db.NewSelect().Model(&rows).Column("id", "endpoint_id", "secret").
			Where("id > ?", after).Where("secret NOT LIKE ?", skip+"%").
			OrderExpr("id").Limit(sealBatch).Scan(ctx)
		if err != nil {
			return n, fmt.Errorf("seal secrets: %w", err)
		}
		if len(rows) == 0 {
			return n, nil
		}
		for _, s := range rows {
			after = s.ID
			secret, err := r.openSecret(s.EndpointID, s)
			if err != nil {
				return n, fmt.Errorf("seal secrets: %w", err)
			}
			sealed, err := ring.Seal(secret, secretAD(s.EndpointID, s.ID))
			if err != nil {
				return n, fmt.Errorf("seal secrets: %w", err)
			}
			res, err := r.db.NewUpdate().Model((*endpointSecret)(nil)).Set("secret = ?", sealed).
				Where("id = ? AND secret = ?", s.ID, s.Secret).Exec(ctx)
			if err != nil {
				return n, fmt.Errorf("seal secret %d: %w", s.ID, err)
			}
			if k, _ := res.RowsAffected(); k == 1 {
				n++
			}
		}
	}
}
