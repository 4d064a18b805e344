package rep

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// healthClient makes the HTTP start checks: no proxy, no keep-alive (each
// check is a fresh connection, as Diego's healthcheck binary makes).
var healthClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func httpCheck(ctx context.Context, addr string, ch checkSpec) error {
	ctx, cancel := context.WithTimeout(ctx, ch.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+ch.path, nil)
	if err != nil {
		return err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return fmt.Errorf("Failed to make HTTP request to '%s' on %s: %v", ch.path, ch.name, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Failed to make HTTP request to '%s' on %s: received status code %d", ch.path, ch.name, resp.StatusCode)
	}
	return nil
}
