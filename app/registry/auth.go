package registry

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks/delivery"
)

// An endpoint's authentication of hookd's deliveries, beyond the
// signature: a client certificate for mutual TLS, CAs that verify its
// server, OAuth 2.0 client credentials. The client key and the client
// secret are sealed at rest (Config.Secrets) and never shown.

// TLSInput is an endpoint's TLS material as a caller sets it, in PEM.
type TLSInput struct {
	// ClientCertificate is the certificate hookd presents, then its
	// chain; ClientKey its private key. In a patch, a ClientKey left
	// empty keeps the current key, which must match.
	ClientCertificate string
	ClientKey         string
	// CABundle verifies the endpoint's server instead of the system's
	// roots.
	CABundle string
}

// OAuthInput is an endpoint's OAuth 2.0 client credentials as a caller sets
// them. In a patch, a ClientSecret left empty keeps the current one.
type OAuthInput struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	Audience     string
}

// EndpointTLS is an endpoint's TLS material as the API shows it: the
// client key only by whether there is one.
type EndpointTLS struct {
	ClientCertificate          *string    `json:"client_certificate" doc:"The client certificate (PEM, then its chain) hookd presents to the endpoint's server; null for none."`
	ClientCertificateSubject   *string    `json:"client_certificate_subject" doc:"The subject of the client certificate, e.g. CN=hookd,O=Acme; null for none."`
	ClientCertificateExpiresAt *time.Time `json:"client_certificate_expires_at" doc:"When the client certificate expires (its NotAfter); null for none."`
	ClientKeySet               bool       `json:"client_key_set" doc:"Whether a client key is stored. It is stored encrypted (HOOKD_SECRETS_KEY) and never returned."`
	CABundle                   *string    `json:"ca_bundle" doc:"The CA certificates (PEM) that verify the endpoint's server instead of the system's; null for the system's."`
}

// EndpointOAuth is an endpoint's OAuth 2.0 client credentials as the API
// shows them: the client secret only by whether there is one.
type EndpointOAuth struct {
	TokenURL        string   `json:"token_url" doc:"The token endpoint hookd asks for a token (client credentials grant)."`
	ClientID        string   `json:"client_id"`
	ClientSecretSet bool     `json:"client_secret_set" doc:"Whether a client secret is stored. It is stored encrypted (HOOKD_SECRETS_KEY) and never returned."`
	Scopes          []string `json:"scopes" nullable:"false" doc:"The scopes asked for; empty for none."`
	Audience        string   `json:"audience" doc:"The audience parameter sent with the token request; empty for none."`
}

// Limits of an endpoint's authentication.
const (
	// maxPEM bounds a certificate (chain) or a CA bundle.
	maxPEM = 64 << 10
	// maxKeyPEM bounds a private key: an 8192-bit RSA key is under 7 KiB.
	maxKeyPEM = 16 << 10
	// maxRSABits bounds the RSA keys of client certificates, whose
	// operations cost more than linearly in their size.
	maxRSABits = 8192
	// OAuth fields.
	maxClientID     = 255
	maxClientSecret = 1024
	maxScopes       = 20
	maxScope        = 200
	maxAudience     = 1024
)

// Columns of endpoints whose values are sealed.
const (
	colClientKey    = "tls_client_key"
	colClientSecret = "oauth_client_secret"
)

// columnAD is the identity a sealed column of endpoint id is sealed to: a
// value moved to another endpoint or column does not open.
func columnAD(endpointID, column string) []byte {
	return fmt.Appendf(nil, "endpoints:%s:%s", endpointID, column)
}

// AfterScanRow fills TLS and OAuth, what the API shows of the stored
// columns it read.
func (e *Endpoint) AfterScanRow(context.Context) error {
	e.TLS, e.OAuth = nil, nil
	if e.TLSClientCertificate != nil || e.TLSCABundle != nil {
		t := &EndpointTLS{ClientCertificate: e.TLSClientCertificate, ClientKeySet: e.TLSClientKey != nil, CABundle: e.TLSCABundle}
		if e.TLSClientCertificate != nil {
			if block, _ := pem.Decode([]byte(*e.TLSClientCertificate)); block != nil {
				if c, err := x509.ParseCertificate(block.Bytes); err == nil {
					t.ClientCertificateSubject, t.ClientCertificateExpiresAt = ptr(c.Subject.String()), ptr(c.NotAfter.UTC())
				}
			}
		}
		e.TLS = t
	}
	if e.OAuthTokenURL != nil {
		e.OAuth = &EndpointOAuth{
			TokenURL: *e.OAuthTokenURL, ClientID: deref(e.OAuthClientID), ClientSecretSet: e.OAuthClientSecret != nil,
			Scopes: orEmptySlice(e.OAuthScopes), Audience: deref(e.OAuthAudience),
		}
	}
	return nil
}

var _ bun.AfterScanRowHook = (*Endpoint)(nil)

// setTLS validates in and sets it, sealed, on ep (whose ID is set); a nil
// or empty in removes the TLS material. currentKey is the endpoint's key
// in clear, kept when in leaves the key out ("" for none).
func (r *Registry) setTLS(ep *Endpoint, in *TLSInput, currentKey string) error {
	ep.TLSClientCertificate, ep.TLSClientKey, ep.TLSCABundle = nil, nil, nil
	if in == nil || *in == (TLSInput{}) {
		return nil
	}
	if in.ClientCertificate != "" || in.ClientKey != "" {
		if in.ClientCertificate == "" {
			return resource.Invalid("tls.client_certificate", "is required with tls.client_key")
		}
		if _, err := parseCertificates("tls.client_certificate", in.ClientCertificate); err != nil {
			return err
		}
		key := in.ClientKey
		if key == "" {
			key = currentKey
		}
		if key == "" {
			return resource.Invalid("tls.client_key", "is required with tls.client_certificate")
		}
		if err := validClientKey(in.ClientCertificate, key); err != nil {
			return err
		}
		sealed, err := r.cfg.Secrets.Seal(key, columnAD(ep.ID, colClientKey))
		if err != nil {
			return err
		}
		ep.TLSClientCertificate, ep.TLSClientKey = ptr(in.ClientCertificate), &sealed
	}
	if in.CABundle != "" {
		if _, err := parseCertificates("tls.ca_bundle", in.CABundle); err != nil {
			return err
		}
		ep.TLSCABundle = ptr(in.CABundle)
	}
	return nil
}

// patchAuth validates the TLS and OAuth parts of patch p of endpoint id of
// app appID and adds them to upd. A client key or client secret p leaves
// out is kept: it is read, opened, and checked against the rest; a client
// secret only while the token URL and client ID stay the same.
func (r *Registry) patchAuth(ctx context.Context, appID, id string, p EndpointPatch, upd *bun.UpdateQuery) error {
	var cur Endpoint
	keepKey := p.TLS != nil && p.TLS.ClientKey == "" && p.TLS.ClientCertificate != ""
	keepSecret := p.OAuth != nil && p.OAuth.ClientSecret == "" && p.OAuth.TokenURL != ""
	if keepKey || keepSecret {
		err := r.db.NewSelect().Model(&cur).Column("id", colClientKey, colClientSecret, "oauth_token_url", "oauth_client_id").
			Where("app_id = ? AND id = ?", appID, id).Scan(ctx)
		if err != nil {
			return fmt.Errorf("get endpoint %s: %w", id, resource.NotFound(err))
		}
	}
	next := Endpoint{ID: id}
	if p.TLS != nil {
		key, err := r.openColumn(id, colClientKey, cur.TLSClientKey)
		if err != nil {
			return err
		}
		if err := r.setTLS(&next, p.TLS, key); err != nil {
			return err
		}
		upd.Set("tls_client_certificate = ?", next.TLSClientCertificate).
			Set("tls_client_key = ?", next.TLSClientKey).
			Set("tls_ca_bundle = ?", next.TLSCABundle)
	}
	if p.OAuth != nil {
		// The stored secret is kept only for the token server and client
		// it was given for: sent to another token URL, it would go to
		// whoever holds that URL.
		if keepSecret && (cur.OAuthTokenURL == nil || *cur.OAuthTokenURL != p.OAuth.TokenURL ||
			cur.OAuthClientID == nil || *cur.OAuthClientID != p.OAuth.ClientID) {
			return resource.Invalid("oauth.client_secret", "is required when token_url or client_id changes: the stored secret goes only to the token server and client it was given for")
		}
		secret, err := r.openColumn(id, colClientSecret, cur.OAuthClientSecret)
		if err != nil {
			return err
		}
		if err := r.setOAuth(ctx, &next, p.OAuth, secret); err != nil {
			return err
		}
		upd.Set("oauth_token_url = ?", next.OAuthTokenURL).
			Set("oauth_client_id = ?", next.OAuthClientID).
			Set("oauth_client_secret = ?", next.OAuthClientSecret).
			Set("oauth_scopes = ?", pgdialect.Array(next.OAuthScopes)).
			Set("oauth_audience = ?", next.OAuthAudience)
	}
	return nil
}

// parseCertificates parses a PEM text of one or more certificates and
// nothing else.
func parseCertificates(field, text string) ([]*x509.Certificate, error) {
	if len(text) > maxPEM {
		return nil, resource.Invalid(field, "must be at most %d bytes of PEM", maxPEM)
	}
	var certs []*x509.Certificate
	rest := []byte(text)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, resource.Invalid(field, "must hold only CERTIFICATE blocks, not %s", printableField(block.Type))
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, resource.Invalid(field, "certificate %d does not parse: %v", len(certs)+1, err)
		}
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() > maxRSABits {
			return nil, resource.Invalid(field, "certificate %d: RSA keys of at most %d bits", len(certs)+1, maxRSABits)
		}
		certs = append(certs, c)
	}
	switch {
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, resource.Invalid(field, "must be PEM certificates only: text after the last one does not parse")
	case len(certs) == 0:
		return nil, resource.Invalid(field, "must hold at least one PEM certificate")
	}
	return certs, nil
}

// validClientKey checks that key is one PEM private key (PKCS #8, PKCS #1
// or SEC 1) of the leaf of cert.
func validClientKey(cert, key string) error {
	const field = "tls.client_key"
	if len(key) > maxKeyPEM {
		return resource.Invalid(field, "must be at most %d bytes of PEM", maxKeyPEM)
	}
	block, rest := pem.Decode([]byte(key))
	if block == nil || !strings.HasSuffix(block.Type, "PRIVATE KEY") || len(bytes.TrimSpace(rest)) > 0 {
		return resource.Invalid(field, "must be one PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
	}
	if block.Headers["Proc-Type"] != "" {
		return resource.Invalid(field, "must not be encrypted")
	}
	if _, err := tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
		return resource.Invalid(field, "does not parse or does not match tls.client_certificate")
	}
	return nil
}

// setOAuth validates in and sets it, sealed, on ep (whose ID is set); a nil
// in removes the credentials. currentSecret is the endpoint's client
// secret in clear, kept when in leaves it out ("" for none).
func (r *Registry) setOAuth(ctx context.Context, ep *Endpoint, in *OAuthInput, currentSecret string) error {
	ep.OAuthTokenURL, ep.OAuthClientID, ep.OAuthClientSecret, ep.OAuthScopes, ep.OAuthAudience = nil, nil, nil, nil, nil
	if in == nil || in.TokenURL == "" && in.ClientID == "" && in.ClientSecret == "" && len(in.Scopes) == 0 && in.Audience == "" {
		return nil
	}
	if err := r.validateURL(ctx, "oauth.token_url", in.TokenURL); err != nil {
		return err
	}
	if in.ClientID == "" || len(in.ClientID) > maxClientID || strings.ContainsFunc(in.ClientID, unicode.IsControl) {
		return resource.Invalid("oauth.client_id", "must be 1 to %d characters, without control characters", maxClientID)
	}
	secret := in.ClientSecret
	if secret == "" {
		secret = currentSecret
	}
	if secret == "" || len(secret) > maxClientSecret || strings.ContainsFunc(secret, unicode.IsControl) {
		return resource.Invalid("oauth.client_secret", "must be 1 to %d characters, without control characters", maxClientSecret)
	}
	if len(in.Scopes) > maxScopes {
		return resource.Invalid("oauth.scopes", "must list at most %d scopes", maxScopes)
	}
	for _, s := range in.Scopes {
		if !validScope(s) {
			return resource.Invalid("oauth.scopes", "%q is not a scope: 1 to %d printable ASCII characters without space, \" or \\", printableField(s), maxScope)
		}
	}
	if len(in.Audience) > maxAudience || strings.ContainsFunc(in.Audience, unicode.IsControl) {
		return resource.Invalid("oauth.audience", "must be at most %d characters, without control characters", maxAudience)
	}
	sealed, err := r.cfg.Secrets.Seal(secret, columnAD(ep.ID, colClientSecret))
	if err != nil {
		return err
	}
	ep.OAuthTokenURL, ep.OAuthClientID, ep.OAuthClientSecret = ptr(in.TokenURL), ptr(in.ClientID), &sealed
	ep.OAuthScopes = append([]string{}, in.Scopes...)
	if in.Audience != "" {
		ep.OAuthAudience = ptr(in.Audience)
	}
	return nil
}

// validScope reports whether s is an RFC 6749 scope token (NQCHAR).
func validScope(s string) bool {
	if s == "" || len(s) > maxScope {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// printableField returns s, cut and without control characters, to quote
// in a problem.
func printableField(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "") + "..."
	}
	return s
}

// openColumn returns the value in clear of a sealed column of endpoint id,
// "" for NULL.
func (r *Registry) openColumn(id, column string, stored *string) (string, error) {
	if stored == nil {
		return "", nil
	}
	v, err := r.cfg.Secrets.Open(*stored, columnAD(id, column))
	if err != nil {
		return "", fmt.Errorf("open %s of endpoint %s: %w", column, id, err)
	}
	return v, nil
}

// deliveryAuth returns what the deliverer needs of ep's authentication,
// opened and parsed.
func (r *Registry) deliveryAuth(ep *Endpoint) (*delivery.ClientTLS, *delivery.OAuth, error) {
	var (
		tlsMaterial *delivery.ClientTLS
		creds       *delivery.OAuth
	)
	if ep.TLSClientCertificate != nil || ep.TLSCABundle != nil {
		key, err := r.openColumn(ep.ID, colClientKey, ep.TLSClientKey)
		if err != nil {
			return nil, nil, err
		}
		tlsMaterial, err = delivery.NewClientTLS([]byte(deref(ep.TLSClientCertificate)), []byte(key), []byte(deref(ep.TLSCABundle)))
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %s: %w", ep.ID, err)
		}
	}
	if ep.OAuthTokenURL != nil {
		secret, err := r.openColumn(ep.ID, colClientSecret, ep.OAuthClientSecret)
		if err != nil {
			return nil, nil, err
		}
		creds = &delivery.OAuth{
			TokenURL: *ep.OAuthTokenURL, ClientID: deref(ep.OAuthClientID), ClientSecret: secret,
			Scopes: ep.OAuthScopes, Audience: deref(ep.OAuthAudience),
		}
	}
	return tlsMaterial, creds, nil
}

// sealEndpointColumns seals the client keys and client secrets of
// endpoints as SealSecrets does the signing keys: those not starting with
// skip, each replaced only if it still holds what was read. It returns how
// many values it sealed.
func (r *Registry) sealEndpointColumns(ctx context.Context, skip string) (int, error) {
	ring := r.cfg.Secrets
	after, n := "", 0
	for {
		var rows []Endpoint
		err := r.db.NewSelect().Model(&rows).Column("id", colClientKey, colClientSecret).
			Where("id > ?", after).
			WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
				return q.Where("? NOT LIKE ?", bun.Ident(colClientKey), skip+"%").
					WhereOr("? NOT LIKE ?", bun.Ident(colClientSecret), skip+"%")
			}).
			OrderExpr("id").Limit(sealBatch).Scan(ctx)
		if err != nil {
			return n, fmt.Errorf("seal endpoint credentials: %w", err)
		}
		if len(rows) == 0 {
			return n, nil
		}
		for _, ep := range rows {
			after = ep.ID
			for column, stored := range map[string]*string{colClientKey: ep.TLSClientKey, colClientSecret: ep.OAuthClientSecret} {
				if stored == nil || strings.HasPrefix(*stored, skip) {
					continue
				}
				plain, err := r.openColumn(ep.ID, column, stored)
				if err != nil {
					return n, fmt.Errorf("seal endpoint credentials: %w", err)
				}
				sealed, err := ring.Seal(plain, columnAD(ep.ID, column))
				if err != nil {
					return n, fmt.Errorf("seal endpoint credentials: %w", err)
				}
				res, err := r.db.NewUpdate().Model((*Endpoint)(nil)).Set("? = ?", bun.Ident(column), sealed).
					Where("id = ? AND ? = ?", ep.ID, bun.Ident(column), *stored).Exec(ctx)
				if err != nil {
					return n, fmt.Errorf("seal %s of endpoint %s: %w", column, ep.ID, err)
				}
				if k, _ := res.RowsAffected(); k == 1 {
					n++
				}
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orEmptySlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
