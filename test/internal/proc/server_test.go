package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serveArg, as the first argument of this test binary, makes it the server
// that TestServer starts: it listens on the address that follows, saying
// so in its output, answers /ready with 200, and exits on SIGTERM; a failed
// listen prints Go's error ("address already in use") and exits 1.
const serveArg = "proc-test-serve"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == serveArg {
		serve(os.Args[2])
		return
	}
	os.Exit(m.Run())
}

func serve(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("serving on", addr)
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ready" {
				http.NotFound(w, r)
			}
		}))
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	fmt.Println("terminated")
}

// TestServer starts a server whose first attempt finds its port taken and
// checks that Start prepares a second attempt on a free port and succeeds;
// then that Halt, Restart (same address, the log appended) and Stop (the
// owned work dir removed) act on it.
func TestServer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs SIGTERM")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	go func() { // hang up at once, so that probing it fails fast
		for {
			c, err := taken.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var mu sync.Mutex
	var lines []string
	var addrs []string
	hc := &http.Client{}
	s := &Server{
		Name: "sleeper", Title: "Sleeper", Tag: "proc",
		Tool: filepath.Base(os.Args[0]), BinDir: filepath.Dir(os.Args[0]), LogName: "server.log",
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, fmt.Sprintf(format, args...))
		},
		ReadyTimeout: 30 * time.Second, StopGrace: 5 * time.Second, ProbeInterval: 10 * time.Millisecond,
	}
	s.Prepare = func() (Launch, error) {
		addr := taken.Addr().String()
		if len(addrs) > 0 {
			ports, err := FreePorts(1)
			if err != nil {
				return Launch{}, err
			}
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		}
		addrs = append(addrs, addr)
		return Launch{Addr: "http://" + addr, Args: []string{serveArg, addr}}, nil
	}
	s.Ready = func(ctx context.Context) error {
		_, err := GetOK(ctx, hc, "http://"+addrs[len(addrs)-1]+"/ready", 1024)
		return err
	}
	ready := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return s.Ready(ctx)
	}

	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	dir := s.WorkDir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if dir == "" {
		t.Fatal("Start made no work dir")
	}
	if len(addrs) != 2 {
		t.Fatalf("Start prepared %d attempts (%v), want 2: the first port was taken", len(addrs), addrs)
	}
	mu.Lock()
	progress := strings.Join(lines, "\n")
	mu.Unlock()
	for _, want := range []string{"proc: Sleeper attempt 1: sleeper (pid ", "proc: Sleeper ready at http://" + addrs[1] + " in "} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress lines lack %q:\n%s", want, progress)
		}
	}
	if err := ready(); err != nil {
		t.Fatalf("after Start: %v", err)
	}

	first := s.PID()
	if err := s.Halt(); err != nil {
		t.Fatalf("Halt: %v", err)
	}
	if err := ready(); err == nil {
		t.Fatal("still answering after Halt")
	}
	if err := s.Restart(context.Background()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.PID() == first {
		t.Errorf("Restart kept pid %d, want a new process", first)
	}
	if err := ready(); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	if got := strings.Count(s.LogTail(), "serving on "+addrs[1]); got != 2 {
		t.Errorf("log has %d starts on %s, want 2 (Restart appends on the same address):\n%s", got, addrs[1], s.LogTail())
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir after Stop: %v, want it removed", err)
	}
}

// TestServerStartFails checks that a start that fails for another reason
// than a taken port is not retried, leaves no process and no owned work
// dir, and says why with the log's tail.
func TestServerStartFails(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs SIGTERM")
	}
	attempts := 0
	s := &Server{
		Name: "sleeper", Title: "Sleeper", Tag: "proc",
		Tool: filepath.Base(os.Args[0]), BinDir: filepath.Dir(os.Args[0]), LogName: "server.log",
		ReadyTimeout: 30 * time.Second, StopGrace: 5 * time.Second, ProbeInterval: 10 * time.Millisecond,
		Prepare: func() (Launch, error) {
			attempts++
			return Launch{Addr: "nowhere", Args: []string{serveArg, "not an address"}}, nil
		},
		Ready: func(context.Context) error { return errors.New("never") },
	}
	err := s.Start(context.Background())
	dir := s.WorkDir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err == nil {
		t.Fatal("Start succeeded with an address that cannot be listened on")
	}
	for _, want := range []string{"sleeper (pid ", ") at nowhere, waited up to 30s: exited before becoming ready: ", "Sleeper log (", "missing port in address"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if attempts != 1 {
		t.Errorf("Start prepared %d attempts, want 1: nothing says a port was taken", attempts)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir after a failed Start: %v, want it removed", err)
	}
}

func TestFirstLine(t *testing.T) {
	long := strings.Repeat("x", 301)
	tests := []struct{ name, in, want string }{
		{name: "one line", in: "one", want: "one"},
		{name: "first of several", in: "first\nsecond\n", want: "first"},
		{name: "long line cut at 300 bytes", in: long + "\nnext", want: long[:300] + "…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FirstLine(tc.in); got != tc.want {
				t.Errorf("FirstLine(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// stopCounter is a harness whose Stop adds to Server.Stop, as test/vpa's
// does.
type stopCounter struct {
	srv   *Server
	stops int
}

func (h *stopCounter) Stop() error {
	h.stops++
	return h.srv.Stop()
}

// TestStartTStopsThroughHarness checks that StartT's cleanup stops the
// server through the harness's own Stop when it has one.
func TestStartTStopsThroughHarness(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs SIGTERM")
	}
	hc := &http.Client{}
	var url string
	h := &stopCounter{srv: &Server{
		Name: "sleeper", Title: "Sleeper", Tag: "proc",
		Tool: filepath.Base(os.Args[0]), BinDir: filepath.Dir(os.Args[0]), LogName: "server.log",
		ReadyTimeout: 30 * time.Second, StopGrace: 5 * time.Second, ProbeInterval: 10 * time.Millisecond,
		Prepare: func() (Launch, error) {
			ports, err := FreePorts(1)
			if err != nil {
				return Launch{}, err
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
			url = "http://" + addr
			return Launch{Addr: url, Args: []string{serveArg, addr}}, nil
		},
		Ready: func(ctx context.Context) error {
			_, err := GetOK(ctx, hc, url+"/ready", 1024)
			return err
		},
	}}
	t.Run("started", func(t *testing.T) {
		StartT(t, "proc", 30*time.Second,
			func(ctx context.Context) (*stopCounter, error) { return h, h.srv.Start(ctx) },
			func(h *stopCounter) *Server { return h.srv })
	})
	if h.stops != 1 {
		t.Errorf("cleanup called the harness's Stop %d times, want 1", h.stops)
	}
	select {
	case <-h.srv.Process().Exited():
	default:
		t.Errorf("sleeper (pid %d) still running after the cleanup", h.srv.PID())
	}
}

func TestTagged(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{msg: "no binary", want: "vpa: no binary"},
		{msg: "vpa: no binary", want: "vpa: no binary"},
		{msg: "vpa-recommender: no binary", want: "vpa: vpa-recommender: no binary"},
	} {
		if got := tagged("vpa", errors.New(tc.msg)); got != tc.want {
			t.Errorf("tagged(vpa, %q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
