package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
)

// startComponent runs one component on proc.Server: nports fresh ports
// for args, its log in the work dir (LogPath), ready (nil: once started)
// until it passes, and a start that loses a port race retried on other
// ports. The start is bounded by ctx's deadline.
func (c *Cluster) startComponent(ctx context.Context, name Component, bin string, nports int, env []string,
	args func(ports []int) []string, ready func(ctx context.Context, ports []int) error) ([]int, error) {
	var ports []int
	s := &proc.Server{
		Name: string(name), Title: string(name), Tag: "cluster",
		Tool: filepath.Base(bin), BinDir: filepath.Dir(bin), Env: env,
		WorkDir: c.workDir, LogName: string(name) + ".log", Logf: c.logf,
		ReadyTimeout:  untilDeadline(ctx),
		StopGrace:     c.opts.StopGrace,
		ProbeInterval: 100 * time.Millisecond,
		ProbeTimeout:  5 * time.Second,
		Prepare: func() (proc.Launch, error) {
			p, err := proc.FreePorts(nports)
			if err != nil {
				return proc.Launch{}, err
			}
			ports = p
			return proc.Launch{Addr: listeners(ports), Args: args(ports)}, nil
		},
		Ready: func(ctx context.Context) error {
			if ready == nil {
				return nil
			}
			return ready(ctx, ports)
		},
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.servers[name] = s
	c.mu.Unlock()
	return ports, nil
}

// untilDeadline is what is left of ctx's time (a start's is always
// bounded), at least a second.
func untilDeadline(ctx context.Context) time.Duration {
	deadline, ok := ctx.Deadline()
	if !ok {
		return defaultStartTimeout
	}
	return max(time.Until(deadline).Round(time.Second), time.Second)
}

// listeners names a component's ports for its progress lines.
func listeners(ports []int) string {
	if len(ports) == 0 {
		return "(no port)"
	}
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return strings.Join(addrs, ", ")
}

// exitErr reports, without blocking, why the component's process has
// exited, or nil if it is still running.
func exitErr(s *proc.Server) error {
	p := s.Process()
	select {
	case <-p.Exited():
		return fmt.Errorf("%s (pid %d) exited: %v", s.Name, p.PID(), p.Err())
	default:
		return nil
	}
}
