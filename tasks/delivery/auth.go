package delivery

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// ClientTLS is an endpoint's own TLS material: a client certificate that
// authenticates hookd to the endpoint's server (mutual TLS), and the CAs
// that verify that server instead of the system's. Build it with
// NewClientTLS.
type ClientTLS struct {
	// cert is the client certificate with its key; nil for none.
	cert *tls.Certificate
	// roots verify the server; nil for the system's.
	roots *x509.CertPool
	// version names the material: equal versions hold equal material, so
	// a client built for one serves the other.
	version string
}

// NewClientTLS parses an endpoint's TLS material, each PEM optional: a
// client certificate (chain) with its private key, given together, and a
// CA bundle. It returns nil when none is given.
func NewClientTLS(certPEM, keyPEM, caPEM []byte) (*ClientTLS, error) {
	if len(certPEM) == 0 && len(keyPEM) == 0 && len(caPEM) == 0 {
		return nil, nil
	}
	c := &ClientTLS{}
	if len(certPEM) > 0 || len(keyPEM) > 0 {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.cert = &cert
	}
	if len(caPEM) > 0 {
		c.roots = x509.NewCertPool()
		if !c.roots.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("ca bundle: no certificate")
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	c.version = hex.EncodeToString(h.Sum(nil))
	return c, nil
}

// config returns the TLS configuration of a client of c. The client
// certificate is sent whenever the server asks for one, whatever CAs it
// names as acceptable, so that a server refusing it says why.
func (c *ClientTLS) config() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.roots}
	if c.cert != nil {
		cert := c.cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg
}

// OAuth is an endpoint's OAuth 2.0 client credentials (RFC 6749, section
// 4.4): each delivery carries a bearer token from TokenURL, cached until it
// expires.
type OAuth struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// Audience, when set, is sent as the token request's "audience"
	// parameter.
	Audience string
}

// equal reports whether o and p get the same tokens.
func (o *OAuth) equal(p *OAuth) bool {
	return o.TokenURL == p.TokenURL && o.ClientID == p.ClientID && o.ClientSecret == p.ClientSecret &&
		o.Audience == p.Audience && slices.Equal(o.Scopes, p.Scopes)
}
