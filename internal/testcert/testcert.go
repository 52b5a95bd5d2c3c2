//go:build linux

// Package testcert makes throwaway certificates for tests of TLS: a CA, a
// server certificate for the loopback addresses signed by it, and a client
// certificate signed by it. Nothing is written to disk unless asked.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An Authority is a CA with the certificates it signed.
type Authority struct {
	Cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	Server tls.Certificate // for 127.0.0.1, ::1 and localhost
	Client tls.Certificate
}

// ForTest is New for a test, which it fails if New fails.
func ForTest(tb testing.TB, name string) *Authority {
	tb.Helper()
	a, err := New(name)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// validity is short: the certificates live as long as a test.
const validity = time.Hour

// New makes a CA named name and its server and client certificates.
func New(name string) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := template(name)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	a := &Authority{key: key}
	if a.Cert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	srv := template(name + " server")
	srv.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	srv.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	srv.DNSNames = []string{"localhost"}
	if a.Server, err = a.sign(srv); err != nil {
		return nil, err
	}
	cli := template(name + " client")
	cli.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if a.Client, err = a.sign(cli); err != nil {
		return nil, err
	}
	return a, nil
}

func template(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (a *Authority) sign(tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Pool returns a pool holding the CA.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p
}

// ServerConfig is a server's configuration with the server certificate;
// with requireClient, it requires client certificates signed by the CA.
func (a *Authority) ServerConfig(requireClient bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{a.Server}}
	if requireClient {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = a.Pool()
	}
	return cfg
}

// ClientConfig is a client's configuration that trusts the CA and
// presents the client certificate.
func (a *Authority) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: a.Pool(), Certificates: []tls.Certificate{a.Client}}
}

// Files writes the CA's certificate and the server's and client's
// certificates and keys as PEM files into dir, named ca.pem, server.pem,
// server-key.pem, client.pem and client-key.pem, and returns dir.
func (a *Authority) Files(dir string) (string, error) {
	write := func(name, typ string, der []byte) error {
		return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	if err := write("ca.pem", "CERTIFICATE", a.Cert.Raw); err != nil {
		return "", err
	}
	for _, c := range []struct {
		name string
		cert tls.Certificate
	}{{"server", a.Server}, {"client", a.Client}} {
		key, err := x509.MarshalPKCS8PrivateKey(c.cert.PrivateKey)
		if err != nil {
			return "", err
		}
		if err := write(c.name+".pem", "CERTIFICATE", c.cert.Certificate[0]); err != nil {
			return "", err
		}
		if err := write(c.name+"-key.pem", "PRIVATE KEY", key); err != nil {
			return "", err
		}
	}
	return dir, nil
}
