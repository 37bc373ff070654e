package proc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// WaitReady calls probe every interval until it returns nil, p exits, or ctx
// ends, whichever comes first. The errors say which ("exited before becoming
// ready: …", "not ready: …" with the last probe's error); the harness adds
// its component's name, address and log tail. probe bounds its own request.
func WaitReady(ctx context.Context, p *Process, interval time.Duration, probe func(context.Context) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		last := probe(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("exited before becoming ready: %v", p.Err())
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last probe: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// GetOK fetches url with hc and returns at most limit bytes of the body if
// the answer is 200 OK; otherwise the error names the path, the status and
// the first line of the body.
func GetOK(ctx context.Context, hc *http.Client, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if resp.StatusCode != http.StatusOK {
		line, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
		return nil, fmt.Errorf("GET %s: %s: %s", req.URL.Path, resp.Status, line)
	}
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", req.URL.Path, err)
	}
	return body, nil
}

// FileSize is the size of the file at path, 0 if it cannot be read: where
// the next start attempt's lines will begin in an appended log.
func FileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ReadFrom returns the content of path after offset (what one start attempt
// logged), or "" if it cannot be read.
func ReadFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}
