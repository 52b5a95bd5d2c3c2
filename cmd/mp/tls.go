//go:build linux

package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// tlsFlags are the TLS flags of `mp manager`: for serve, the server's
// certificate and the CA its clients' certificates must be signed by; for
// the clients, the CA that signed the server's certificate and their own
// certificate.
type tlsFlags struct {
	server    bool
	on        *bool // clients only: TLS with the system's CAs
	cert, key *string
	ca        *string
}

func addTLSFlags(fs *flag.FlagSet, server bool) *tlsFlags {
	f := &tlsFlags{server: server}
	if server {
		f.cert = fs.String("tls-cert", "", "serve TLS with this certificate (PEM; with -tls-key)")
		f.key = fs.String("tls-key", "", "the private key of -tls-cert (PEM)")
		f.ca = fs.String("tls-ca", "", "require client certificates signed by this CA (PEM)")
	} else {
		f.on = fs.Bool("tls", false, "connect with TLS, verifying the server with the system's CAs")
		f.cert = fs.String("tls-cert", "", "connect with TLS, presenting this client certificate (PEM; with -tls-key)")
		f.key = fs.String("tls-key", "", "the private key of -tls-cert (PEM)")
		f.ca = fs.String("tls-ca", "", "connect with TLS, verifying the server with this CA (PEM)")
	}
	return f
}

// config returns the TLS configuration the flags ask for, or nil.
func (f *tlsFlags) config() (*tls.Config, error) {
	if (*f.cert == "") != (*f.key == "") {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	if f.server && *f.cert == "" {
		if *f.ca != "" {
			return nil, errors.New("-tls-ca needs -tls-cert and -tls-key")
		}
		return nil, nil
	}
	if !f.server && !*f.on && *f.cert == "" && *f.ca == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if *f.cert != "" {
		c, err := tls.LoadX509KeyPair(*f.cert, *f.key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	if *f.ca != "" {
		pem, err := os.ReadFile(*f.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", *f.ca)
		}
		if f.server {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		} else {
			cfg.RootCAs = pool
		}
	}
	return cfg, nil
}
