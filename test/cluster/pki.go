package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// certValidity covers any test run or demo session; the PKI is thrown away
// with the work dir.
const certValidity = 7 * 24 * time.Hour

// keyPair is a certificate with its key, as PEM and as files in the work dir.
type keyPair struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPEM  []byte
	keyPEM   []byte
	certFile string
	keyFile  string
}

// pki is the cluster's throwaway public key infrastructure, generated fresh
// for every cluster. ECDSA P-256 throughout: kube-apiserver accepts it for
// serving, client certs and service-account tokens (ES256), and generating
// it costs microseconds where RSA costs tens of milliseconds per key.
type pki struct {
	dir string

	ca           *keyPair // signs the apiserver's serving cert, client certs and ServingCert's certs
	frontProxyCA *keyPair // signs the aggregator's proxy client cert (requestheader CA)
	apiserver    *keyPair // kube-apiserver serving cert
	proxyClient  *keyPair // CN=front-proxy-client: the aggregator's identity towards extension servers
	admin        *keyPair // CN=admin, O=system:masters
	saKeyFile    string   // service-account token signing key (PKCS#8)
	saPubFile    string   // its public key (PKIX), for verifying tokens

	mu      sync.Mutex
	serials int64 // ServingCert's files are numbered, so repeated calls never clash
}

func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating pki dir: %w", err)
	}
	p := &pki{dir: dir}
	var err error
	if p.ca, err = p.newCA("ca", "gantry-test-cluster-ca"); err != nil {
		return nil, err
	}
	if p.frontProxyCA, err = p.newCA("front-proxy-ca", "gantry-test-front-proxy-ca"); err != nil {
		return nil, err
	}
	if p.apiserver, err = p.issue("apiserver", p.ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		// 127.100.0.1 is the kubernetes Service's ClusterIP (first address of
		// the service range), which in-cluster clients dial.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 100, 0, 1)},
	}); err != nil {
		return nil, err
	}
	if p.proxyClient, err = p.issue("front-proxy-client", p.frontProxyCA, &x509.Certificate{
		Subject:     pkix.Name{CommonName: frontProxyClientName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	if p.admin, err = p.issue("admin", p.ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating service-account key: %w", err)
	}
	saPEM, err := keyToPEM(saKey)
	if err != nil {
		return nil, err
	}
	p.saKeyFile = filepath.Join(dir, "sa.key")
	if err := os.WriteFile(p.saKeyFile, saPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding service-account public key: %w", err)
	}
	p.saPubFile = filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(p.saPubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, fmt.Errorf("writing service-account public key: %w", err)
	}
	return p, nil
}

func (p *pki) newCA(name, cn string) (*keyPair, error) {
	return p.issue(name, nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
}

// issue generates a key, signs tmpl with parent (self-signed if parent is
// nil) and writes <name>.crt and <name>.key into the pki dir.
func (p *pki) issue(name string, parent *keyPair, tmpl *x509.Certificate) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key for %s: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial for %s: %w", name, err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	// Backdated a little so a cert is valid at once on every clock in play.
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(certValidity)
	if !tmpl.IsCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate for %s: %w", name, err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{
		cert:     cert,
		key:      key,
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:   keyPEM,
		certFile: filepath.Join(p.dir, name+".crt"),
		keyFile:  filepath.Join(p.dir, name+".key"),
	}
	if err := os.WriteFile(kp.certFile, kp.certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", kp.certFile, err)
	}
	if err := os.WriteFile(kp.keyFile, kp.keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", kp.keyFile, err)
	}
	return kp, nil
}

// servingCert issues a serving certificate for dnsNames (plus localhost and
// 127.0.0.1) signed by the cluster CA.
func (p *pki) servingCert(dnsNames []string) (*keyPair, error) {
	p.mu.Lock()
	p.serials++
	name := fmt.Sprintf("serving-%d", p.serials)
	p.mu.Unlock()
	names := append([]string{"localhost"}, dnsNames...)
	return p.issue(name, p.ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[len(names)-1]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    names,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
}

func keyToPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// kubeletServingCert issues a node's kubelet serving certificate, as a
// kubelet with serverTLSBootstrap gets it: CN system:node:<name> in group
// system:nodes, for the node's name and address, signed by the cluster CA.
func (p *pki) kubeletServingCert(node string, ip net.IP) (*keyPair, error) {
	return p.issue("kubelet-"+node, p.ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{node},
		IPAddresses: []net.IP{ip},
	})
}
