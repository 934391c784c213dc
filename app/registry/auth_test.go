package registry

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/hookd/hookd/app/resource"
)

// authCert returns a certificate for pub signed by a new CA key, and that
// CA's key, in PEM.
func authCert(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	ca, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	parent := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, ca)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func authKeyPEM(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestValidTLSMaterial checks the refusals of client certificates, keys
// and CA bundles, each a validation error naming its field.
func TestValidTLSMaterial(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, keyPEM, otherPEM := authCert(t, &key.PublicKey), authKeyPEM(t, key), authKeyPEM(t, other)
	// A certificate of a 8,200-bit RSA key (its modulus need not factor:
	// only its size is looked at).
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 8200))
	n.SetBit(n, 8199, 1)
	n.SetBit(n, 0, 1)
	bigRSA := authCert(t, &rsa.PublicKey{N: n, E: 65537})
	encrypted := strings.Replace(keyPEM, "-----BEGIN PRIVATE KEY-----\n", "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n", 1)

	field := func(err error) string {
		var inv *resource.InvalidError
		if errors.As(err, &inv) {
			return inv.Field
		}
		return ""
	}
	for _, tc := range []struct {
		name, cert, key, ca string
		field               string // "" when valid
	}{
		{"Valid", cert, keyPEM, cert, ""},
		{"ChainAndBundle", cert + cert, keyPEM, cert + "\n" + cert + "\n\n", ""},
		{"NotPEM", "hello", keyPEM, "", "tls.client_certificate"},
		{"KeyAsCertificate", keyPEM, keyPEM, "", "tls.client_certificate"},
		{"TextAfter", cert + "more", keyPEM, "", "tls.client_certificate"},
		{"TooLarge", strings.Repeat(cert, maxPEM/len(cert)+1), keyPEM, "", "tls.client_certificate"},
		{"RSATooLarge", bigRSA, keyPEM, "", "tls.client_certificate"},
		{"KeyMismatch", cert, otherPEM, "", "tls.client_key"},
		{"KeyNotPEM", cert, "secret", "", "tls.client_key"},
		{"TwoKeys", cert, keyPEM + keyPEM, "", "tls.client_key"},
		{"KeyEncrypted", cert, encrypted, "", "tls.client_key"},
		{"KeyTooLarge", cert, keyPEM + strings.Repeat(" ", maxKeyPEM), "", "tls.client_key"},
		{"BundleEmpty", "", "", "   ", "tls.ca_bundle"},
		{"BundleNotPEM", "", "", "CA", "tls.ca_bundle"},
		{"BundleWithKey", "", "", cert + keyPEM, "tls.ca_bundle"},
	} {
		r := &Registry{}
		ep := &Endpoint{ID: "ep_test"}
		err := r.setTLS(ep, &TLSInput{ClientCertificate: tc.cert, ClientKey: tc.key, CABundle: tc.ca}, "")
		if got := field(err); got != tc.field || (tc.field == "") != (err == nil) {
			t.Errorf("%s: %v (field %q), want field %q", tc.name, err, got, tc.field)
		}
	}
}

func TestValidScope(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"webhooks:write": true, "https://api.example/.default": true, "a": true,
		"": false, "a b": false, `a"b`: false, `a\b`: false, "é": false, "a\tb": false,
		strings.Repeat("s", maxScope): true, strings.Repeat("s", maxScope+1): false,
	} {
		if got := validScope(s); got != want {
			t.Errorf("validScope(%q) = %t, want %t", s, got, want)
		}
	}
}
