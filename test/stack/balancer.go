package stack

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Balancer is a round-robin TCP proxy on loopback that stands in for a
// Service and kube-proxy in front of several Gantry replicas. Each new
// connection goes to the next backend; a backend that refuses the
// connection is skipped for the next one, as kube-proxy stops sending to a
// pod once its endpoint is gone. TLS passes through untouched: the client
// talks to a replica, whose serving certificate names the Service.
type Balancer struct {
	ln       net.Listener
	backends []string

	mu    sync.Mutex
	next  int
	open  map[string]int // connections open, by backend
	total map[string]int // connections made, by backend
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// NewBalancer listens on a free 127.0.0.1 port and forwards to backends
// (host:port) until Close.
func NewBalancer(backends ...string) (*Balancer, error) {
	if len(backends) == 0 {
		return nil, errors.New("stack: balancer needs at least one backend")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{ln: ln, backends: backends, open: map[string]int{}, total: map[string]int{}, conns: map[net.Conn]bool{}}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

// Port is the port the balancer listens on.
func (b *Balancer) Port() int { return b.ln.Addr().(*net.TCPAddr).Port }

// Open returns the connections open now, by backend address.
func (b *Balancer) Open() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.open {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// Total returns the connections made since the start, by backend address.
func (b *Balancer) Total() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.total {
		out[k] = v
	}
	return out
}

// Close stops listening, closes every connection and waits for the
// forwarding goroutines.
func (b *Balancer) Close() error {
	err := b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return err
}

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return // closed
		}
		b.wg.Add(1)
		go b.forward(c)
	}
}

// dial connects to the next backend that accepts, trying each once.
func (b *Balancer) dial() (net.Conn, string, error) {
	var errs []error
	for range b.backends {
		b.mu.Lock()
		addr := b.backends[b.next%len(b.backends)]
		b.next++
		b.mu.Unlock()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			return c, addr, nil
		}
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

func (b *Balancer) forward(client net.Conn) {
	defer b.wg.Done()
	backend, addr, err := b.dial()
	if err != nil {
		client.Close()
		return
	}
	b.mu.Lock()
	b.conns[client], b.conns[backend] = true, true
	b.open[addr]++
	b.total[addr]++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.conns, client)
		delete(b.conns, backend)
		b.open[addr]--
		b.mu.Unlock()
	}()
	// Either side ending ends both: a replica that dies takes its
	// connections with it, as it would through kube-proxy.
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(backend, client)
	go pipe(client, backend)
	<-done
	client.Close()
	backend.Close()
	<-done
}
