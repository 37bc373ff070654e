package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// KubeletProxy gives every fake node a kubelet endpoint: one TLS listener
// per node on <node InternalIP>:<KubeletPort>, with a serving certificate
// for that IP signed by the cluster CA, that answers
//
//	/metrics/resource  from kwok's /metrics/nodes/<node>/metrics/resource
//	/metrics/cadvisor  from the node's cAdvisor upstream, if one is set
//	/healthz           ok
//
// so a scraper finds a fake node exactly as it finds a real kubelet: from
// the Node's status (address and daemonEndpoints.kubeletEndpoint.port), over
// HTTPS verified with the cluster CA. Unlike a kubelet it authorizes no one:
// any client is served (it asks for a client certificate but does not check
// it). What a client presented is kept for tests (LastRequest).
//
// The node is told from the local address a connection came in on, so one
// http.Server serves all listeners.
type KubeletProxy struct {
	port     int
	kwokURL  *url.URL
	pki      *pki
	logf     func(string, ...any)
	srv      *http.Server
	upstream *http.Transport

	mu     sync.Mutex
	byIP   map[string]*kubeletNode
	byName map[string]*kubeletNode
	closed bool
}

type kubeletNode struct {
	name, ip string
	ln       net.Listener
	cert     *tls.Certificate

	// Guarded by KubeletProxy.mu.
	cadvisor *url.URL
	last     KubeletRequest
	requests int64
}

// KubeletRequest is what the proxy saw of a request to a node's kubelet
// endpoint.
type KubeletRequest struct {
	Path string
	// Authorization is the request's Authorization header as sent (a
	// bearer token, say), empty if none.
	Authorization string
	// ClientCertSubject is the subject of the client certificate the
	// caller presented in the TLS handshake, empty if none.
	ClientCertSubject string
	Time              time.Time
}

type proxyTargetKey struct{}

// kubeletUpstreamTimeout bounds one forwarded request; kwok answers in
// milliseconds, a cAdvisor upstream within a second.
const kubeletUpstreamTimeout = 30 * time.Second

func newKubeletProxy(port int, kwokURL string, p *pki, logf func(string, ...any)) (*KubeletProxy, error) {
	u, err := url.Parse(kwokURL)
	if err != nil {
		return nil, fmt.Errorf("kubelet proxy: kwok URL: %w", err)
	}
	kp := &KubeletProxy{
		port:    port,
		kwokURL: u,
		pki:     p,
		logf:    logf,
		byIP:    map[string]*kubeletNode{},
		byName:  map[string]*kubeletNode{},
		// Every node's scrape goes to the same kwok address: keep enough
		// idle connections that a scrape of many nodes at once reuses them.
		upstream: &http.Transport{
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: kubeletUpstreamTimeout,
		},
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := pr.In.Context().Value(proxyTargetKey{}).(*url.URL)
			out := *target
			if out.RawQuery == "" {
				out.RawQuery = pr.In.URL.RawQuery
			}
			pr.Out.URL = &out
			pr.Out.Host = ""
			// The credentials were meant for the kubelet, not for kwok or
			// cAdvisor.
			pr.Out.Header.Del("Authorization")
		},
		Transport: kp.upstream,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			kp.logf("cluster: kubelet proxy: %s %s: %v", r.Method, r.URL.Path, err)
			http.Error(w, "upstream unavailable", http.StatusBadGateway)
		},
	}
	kp.srv = &http.Server{
		Handler:           kp.handler(rp),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: kp.certificateFor,
			// Ask for a client certificate, as a kubelet does, but accept
			// any or none: the proxy records it instead of checking it.
			ClientAuth: tls.RequestClientCert,
		},
	}
	return kp, nil
}

// Port is the kubelet port of every node (the same on all, as with real
// kubelets).
func (kp *KubeletProxy) Port() int { return kp.port }

// addNode starts the node's listener on ip:port.
func (kp *KubeletProxy) addNode(name, ip string) error {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		return fmt.Errorf("kubelet proxy: node %s: bad IP %q", name, ip)
	}
	kpair, err := kp.pki.kubeletServingCert(name, parsed)
	if err != nil {
		return fmt.Errorf("kubelet proxy: node %s: %w", name, err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{kpair.cert.Raw}, PrivateKey: kpair.key, Leaf: kpair.cert}

	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.closed {
		return errors.New("kubelet proxy: closed")
	}
	if _, dup := kp.byName[name]; dup {
		return fmt.Errorf("kubelet proxy: node %s already has a kubelet endpoint", name)
	}
	if other, dup := kp.byIP[ip]; dup {
		return fmt.Errorf("kubelet proxy: node %s: IP %s is node %s's", name, ip, other.name)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(kp.port)))
	if err != nil {
		return fmt.Errorf("kubelet proxy: node %s: %w", name, err)
	}
	n := &kubeletNode{name: name, ip: ip, ln: ln, cert: cert}
	kp.byIP[ip], kp.byName[name] = n, n
	go func() {
		// Returns when the listener is closed (removeNode, Close).
		_ = kp.srv.ServeTLS(ln, "", "")
	}()
	return nil
}

// removeNode closes the node's listener (connections already accepted
// stay until Close).
func (kp *KubeletProxy) removeNode(name string) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	n := kp.byName[name]
	if n == nil {
		return
	}
	delete(kp.byName, name)
	delete(kp.byIP, n.ip)
	n.ln.Close()
}

// Close stops every listener and connection.
func (kp *KubeletProxy) Close() error {
	kp.mu.Lock()
	kp.closed = true
	kp.mu.Unlock()
	err := kp.srv.Close()
	kp.upstream.CloseIdleConnections()
	return err
}

// SetCadvisorUpstream makes the node's /metrics/cadvisor answer from
// rawURL (the full URL of a cAdvisor's Prometheus endpoint, e.g.
// http://127.0.0.1:8080/metrics); an empty rawURL makes it 404 again, as it
// does by default.
func (kp *KubeletProxy) SetCadvisorUpstream(node, rawURL string) error {
	var u *url.URL
	if rawURL != "" {
		var err error
		if u, err = url.Parse(rawURL); err != nil || u.Host == "" {
			return fmt.Errorf("kubelet proxy: cAdvisor upstream %q: not an absolute URL (%v)", rawURL, err)
		}
	}
	kp.mu.Lock()
	defer kp.mu.Unlock()
	n := kp.byName[node]
	if n == nil {
		return fmt.Errorf("kubelet proxy: no node %q", node)
	}
	n.cadvisor = u
	return nil
}

// LastRequest returns the last request the node's endpoint received and
// how many it has received in all.
func (kp *KubeletProxy) LastRequest(node string) (last KubeletRequest, count int64) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if n := kp.byName[node]; n != nil {
		return n.last, n.requests
	}
	return KubeletRequest{}, 0
}

// Requests is how many requests all nodes' endpoints have received.
func (kp *KubeletProxy) Requests() int64 {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	var sum int64
	for _, n := range kp.byName {
		sum += n.requests
	}
	return sum
}

func (kp *KubeletProxy) certificateFor(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	n := kp.nodeAt(hello.Conn.LocalAddr())
	if n == nil {
		return nil, fmt.Errorf("no node at %s", hello.Conn.LocalAddr())
	}
	return n.cert, nil
}

func (kp *KubeletProxy) nodeAt(addr net.Addr) *kubeletNode {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return nil
	}
	kp.mu.Lock()
	defer kp.mu.Unlock()
	return kp.byIP[tcp.IP.String()]
}

func (kp *KubeletProxy) handler(rp *httputil.ReverseProxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		n := kp.nodeAt(addr)
		if n == nil {
			http.NotFound(w, r)
			return
		}
		seen := KubeletRequest{Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), Time: time.Now()}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			seen.ClientCertSubject = r.TLS.PeerCertificates[0].Subject.String()
		}
		kp.mu.Lock()
		n.last, n.requests = seen, n.requests+1
		cadvisor := n.cadvisor
		kp.mu.Unlock()

		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var target *url.URL
		switch r.URL.Path {
		case "/healthz":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, "ok")
			return
		case "/metrics/resource":
			t := *kp.kwokURL
			t.Path = "/metrics/nodes/" + n.name + "/metrics/resource"
			target = &t
		case "/metrics/cadvisor":
			if cadvisor == nil {
				http.Error(w, "no cAdvisor upstream for node "+n.name, http.StatusNotFound)
				return
			}
			target = cadvisor
		default:
			http.NotFound(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), kubeletUpstreamTimeout)
		defer cancel()
		rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, proxyTargetKey{}, target)))
	})
}
