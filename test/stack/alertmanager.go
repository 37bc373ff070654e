package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

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

	cmd    *exec.Cmd
	exited chan struct{}
}

// StartAlertmanager runs <binDir>/alertmanager (binDir "" means
// toolbin.Dir()) with config (AlertmanagerConfig if empty) on a free
// loopback port, gossip off, its files in workDir, and waits until it is
// ready. ctx bounds the start only; call Stop when done.
func StartAlertmanager(ctx context.Context, binDir, workDir, config string) (*Alertmanager, error) {
	if binDir == "" {
		var err error
		if binDir, err = toolbin.Dir(); err != nil {
			return nil, err
		}
	}
	bin, err := toolbin.Path(binDir, "alertmanager")
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
	port, err := freePort()
	if err != nil {
		return nil, false, err
	}
	am = &Alertmanager{
		URL:     "http://127.0.0.1:" + strconv.Itoa(port),
		LogPath: filepath.Join(workDir, "alertmanager.log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(am.LogPath)
	if err != nil {
		return nil, false, err
	}
	am.cmd = exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(workDir, "data"),
		"--web.listen-address="+net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--cluster.listen-address=", // no gossip: a single instance on loopback
	)
	am.cmd.Stdout, am.cmd.Stderr = logFile, logFile
	am.cmd.SysProcAttr = sysProcAttr()
	if err := am.cmd.Start(); err != nil {
		logFile.Close()
		return nil, false, fmt.Errorf("stack: starting alertmanager: %w", err)
	}
	go func() {
		_ = am.cmd.Wait()
		logFile.Close()
		close(am.exited)
	}()
	if err := am.waitReady(ctx); err != nil {
		_ = am.Stop()
		log := tail(am.LogPath, 8<<10)
		return nil, strings.Contains(log, "address already in use"), fmt.Errorf("%w\nalertmanager log:\n%s", err, log)
	}
	return am, false, nil
}

func (am *Alertmanager) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, am.URL+"/-/ready", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /-/ready: %s", resp.Status)
		}
		last = err
		select {
		case <-am.exited:
			return fmt.Errorf("stack: alertmanager exited before becoming ready: %v", am.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("stack: alertmanager at %s not ready: %v (last probe: %v)", am.URL, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after 10s. It is safe to call
// more than once.
func (am *Alertmanager) Stop() error {
	if am == nil || am.cmd == nil || am.cmd.Process == nil {
		return nil
	}
	select {
	case <-am.exited:
		return nil
	default:
	}
	_ = am.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-am.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = am.cmd.Process.Kill()
	select {
	case <-am.exited:
		return errors.New("stack: alertmanager ignored SIGTERM and was killed")
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stack: alertmanager (pid %d) did not exit after SIGKILL", am.cmd.Process.Pid)
	}
}
