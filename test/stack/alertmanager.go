package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// AlertmanagerConfig routes every alert to a receiver that sends nothing:
// tests read the alerts back through the v2 API.
const AlertmanagerConfig = `route:
  receiver: none
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: none
`

// Alertmanager is a running Alertmanager child process: Debian's
// prometheus-alertmanager, linked into the bin directory as "alertmanager"
// by test/tools/install-alertmanager.sh.
type Alertmanager struct {
	// URL is its base URL, http://127.0.0.1:<port>; the v2 API is under
	// /api/v2.
	URL string
	// LogPath holds its stdout and stderr.
	LogPath string

	proc *proc.Process
}

// StartAlertmanager runs <binDir>/alertmanager (binDir "" means
// toolbin.Dir()) with config (AlertmanagerConfig if empty) on a free
// loopback port, gossip off, its files in workDir, and waits until it is
// ready. ctx bounds the start only; call Stop when done.
func StartAlertmanager(ctx context.Context, binDir, workDir, config string) (*Alertmanager, error) {
	bin, err := toolbin.Find(binDir, "alertmanager")
	if err != nil {
		return nil, err
	}
	if config == "" {
		config = AlertmanagerConfig
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(workDir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	var lastErr error
	// Another process can take the free port before Alertmanager binds it.
	for range 3 {
		am, retry, err := launchAlertmanager(ctx, bin, workDir, cfgPath)
		if err == nil {
			return am, nil
		}
		lastErr = err
		if !retry {
			break
		}
	}
	return nil, lastErr
}

func launchAlertmanager(ctx context.Context, bin, workDir, cfgPath string) (am *Alertmanager, retry bool, err error) {
	ports, err := proc.FreePorts(1)
	if err != nil {
		return nil, false, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	am = &Alertmanager{
		URL:     "http://" + addr,
		LogPath: filepath.Join(workDir, "alertmanager.log"),
	}
	logFile, err := os.Create(am.LogPath)
	if err != nil {
		return nil, false, err
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(workDir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=", // no gossip: a single instance on loopback
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if am.proc, err = proc.Start("alertmanager", cmd, logFile); err != nil {
		return nil, false, fmt.Errorf("stack: starting alertmanager: %w", err)
	}
	if err := am.waitReady(ctx); err != nil {
		_ = am.Stop()
		log := proc.LogTail(am.LogPath, 8<<10)
		return nil, strings.Contains(log, "address already in use"), fmt.Errorf("%w\nalertmanager log:\n%s", err, log)
	}
	return am, false, nil
}

func (am *Alertmanager) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	err := proc.WaitReady(ctx, am.proc, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := proc.GetOK(ctx, hc, am.URL+"/-/ready", 4096)
		return err
	})
	if err != nil {
		return fmt.Errorf("stack: alertmanager at %s: %w", am.URL, err)
	}
	return nil
}

// Stop ends the process: SIGTERM, then SIGKILL after 10s. It is safe to call
// more than once.
func (am *Alertmanager) Stop() error {
	if am == nil || am.proc == nil {
		return nil
	}
	if err := am.proc.Terminate(10*time.Second, nil); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	return nil
}
