package cluster

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
)

// TestPKIChains checks each certificate against the CA the apiserver or an
// aggregated server will verify it with, for the usage it will be put to.
func TestPKIChains(t *testing.T) {
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	servingFile, servingKey, err := func() (string, string, error) {
		kp, err := p.servingCert([]string{"gantry.gantry-system.svc"})
		if err != nil {
			return "", "", err
		}
		return kp.certFile, kp.keyFile, nil
	}()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		certFile string
		keyFile  string
		ca       *keyPair
		usage    x509.ExtKeyUsage
		dnsName  string
	}{
		{name: "apiserver serves kubernetes.default.svc", certFile: p.apiserver.certFile, keyFile: p.apiserver.keyFile, ca: p.ca, usage: x509.ExtKeyUsageServerAuth, dnsName: "kubernetes.default.svc"},
		{name: "apiserver serves 127.0.0.1", certFile: p.apiserver.certFile, keyFile: p.apiserver.keyFile, ca: p.ca, usage: x509.ExtKeyUsageServerAuth, dnsName: "127.0.0.1"},
		{name: "admin is a client of the cluster CA", certFile: p.admin.certFile, keyFile: p.admin.keyFile, ca: p.ca, usage: x509.ExtKeyUsageClientAuth},
		{name: "proxy client is a client of the front-proxy CA", certFile: p.proxyClient.certFile, keyFile: p.proxyClient.keyFile, ca: p.frontProxyCA, usage: x509.ExtKeyUsageClientAuth},
		{name: "aggregated server serves its service name", certFile: servingFile, keyFile: servingKey, ca: p.ca, usage: x509.ExtKeyUsageServerAuth, dnsName: "gantry.gantry-system.svc"},
		{name: "aggregated server serves localhost", certFile: servingFile, keyFile: servingKey, ca: p.ca, usage: x509.ExtKeyUsageServerAuth, dnsName: "localhost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(tc.certFile, tc.keyFile)
			if err != nil {
				t.Fatalf("loading key pair: %v", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(tc.ca.certPEM) {
				t.Fatal("CA PEM does not parse")
			}
			if _, err := pair.Leaf.Verify(x509.VerifyOptions{
				Roots:     roots,
				DNSName:   tc.dnsName,
				KeyUsages: []x509.ExtKeyUsage{tc.usage},
			}); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}

	t.Run("admin is in system:masters", func(t *testing.T) {
		if got := p.admin.cert.Subject.Organization; len(got) != 1 || got[0] != "system:masters" {
			t.Errorf("admin organization = %q, want [system:masters]", got)
		}
	})
	t.Run("proxy client name matches --requestheader-allowed-names", func(t *testing.T) {
		if got := p.proxyClient.cert.Subject.CommonName; got != frontProxyClientName {
			t.Errorf("proxy client CN = %q, want %q", got, frontProxyClientName)
		}
	})
	t.Run("service-account public key matches the signing key", func(t *testing.T) {
		pub, err := os.ReadFile(p.saPubFile)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := os.ReadFile(p.saKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		pubBlock, _ := pem.Decode(pub)
		privBlock, _ := pem.Decode(priv)
		if pubBlock == nil || privBlock == nil {
			t.Fatal("service-account key files are not PEM")
		}
		pubKey, err := x509.ParsePKIXPublicKey(pubBlock.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		privKey, err := x509.ParsePKCS8PrivateKey(privBlock.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		signer, ok := privKey.(crypto.Signer)
		if !ok {
			t.Fatalf("sa.key holds a %T, not a signing key", privKey)
		}
		if !signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pubKey) {
			t.Error("sa.pub is not the public half of sa.key")
		}
	})
}
