//go:build linux

package manager

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// serverTLS is the part of Options.TLS that Start hands to its server
// process: a *tls.Config holds functions and a certificate pool that
// cannot be listed, so only plain values cross.
type serverTLS struct {
	Chains       [][][]byte // each certificate's chain, DER, leaf first
	Keys         [][]byte   // their private keys, PKCS #8
	MinVersion   uint16
	MaxVersion   uint16
	CipherSuites []uint16
}

// exportTLS checks that Start can serve cfg and takes what crosses.
func exportTLS(cfg *tls.Config) (*serverTLS, error) {
	if cfg == nil {
		return nil, nil
	}
	refuse := func(what string) (*serverTLS, error) {
		return nil, fmt.Errorf("manager: Start cannot hand the server process Options.TLS's %s (a *tls.Config's functions and pools do not cross processes); serve such a configuration with Serve in this process", what)
	}
	switch {
	case len(cfg.Certificates) == 0:
		return nil, errors.New("manager: Options.TLS has no Certificates")
	case cfg.GetCertificate != nil || cfg.GetConfigForClient != nil:
		return refuse("GetCertificate/GetConfigForClient")
	case cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil:
		return refuse("client certificate checks (ClientAuth, ClientCAs)")
	case cfg.VerifyPeerCertificate != nil || cfg.VerifyConnection != nil:
		return refuse("VerifyPeerCertificate/VerifyConnection")
	}
	st := &serverTLS{MinVersion: cfg.MinVersion, MaxVersion: cfg.MaxVersion, CipherSuites: cfg.CipherSuites}
	for _, c := range cfg.Certificates {
		key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("manager: Options.TLS: %w", err)
		}
		st.Chains = append(st.Chains, c.Certificate)
		st.Keys = append(st.Keys, key)
	}
	return st, nil
}

// config rebuilds the server's configuration in the server process.
func (st *serverTLS) config() (*tls.Config, error) {
	if st == nil {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: st.MinVersion, MaxVersion: st.MaxVersion, CipherSuites: st.CipherSuites}
	for i, chain := range st.Chains {
		if i >= len(st.Keys) || len(chain) == 0 {
			return nil, errors.New("manager: malformed TLS parameters")
		}
		key, err := x509.ParsePKCS8PrivateKey(st.Keys[i])
		if err != nil {
			return nil, err
		}
		cfg.Certificates = append(cfg.Certificates, tls.Certificate{Certificate: chain, PrivateKey: key})
	}
	return cfg, nil
}

// pinnedTLS is the configuration Start connects to its own server with:
// it accepts exactly the certificates given to that server, whoever
// signed them and whatever names they bear.
func pinnedTLS(cfg *tls.Config) *tls.Config {
	var leaves [][]byte
	for _, c := range cfg.Certificates {
		leaves = append(leaves, c.Certificate[0])
	}
	return &tls.Config{
		MinVersion:         cfg.MinVersion,
		InsecureSkipVerify: true, // VerifyConnection checks instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				for _, leaf := range leaves {
					if bytes.Equal(cs.PeerCertificates[0].Raw, leaf) {
						return nil
					}
				}
			}
			return errors.New("manager: the server's certificate is not the one Start gave it")
		},
	}
}
