package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/testutil"
)

// Timers of the test router, shortened as gorouter's integration tests do.
const (
	staleThreshold = 1 * time.Second
	pruneInterval  = 100 * time.Millisecond
)

// baseRouterConfig is the YAML every test router starts from.
func baseRouterConfig() map[string]any {
	return map[string]any{
		"start_response_delay":                "0s",
		"minimum_register_interval":           "1s",
		"prune_stale_droplets_interval":       pruneInterval.String(),
		"droplet_stale_threshold":             staleThreshold.String(),
		"suspend_pruning_if_nats_unavailable": true,
		"drain_wait":                          "500ms",
		"drain_timeout":                       "2s",
		"read_header_timeout":                 "300ms",
		"endpoint_timeout":                    "5s",
		"backends":                            map[string]any{"dial_timeout": "1s"},
		"logging":                             map[string]any{"level": "info"},
	}
}

// mergeConfig lays over on base: top-level keys are replaced, except maps,
// whose keys are replaced one by one.
func mergeConfig(base, over map[string]any) map[string]any {
	for k, v := range over {
		if vm, ok := v.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				for kk, vv := range vm {
					bm[kk] = vv
				}
				continue
			}
		}
		base[k] = v
	}
	return base
}

type routerSpec struct {
	config    map[string]any // laid over baseRouterConfig
	natsURL   string         // external NATS (with credentials); empty starts the embedded one
	backendCA string         // --backend-ca
}

// routerProc is a running `minicf router` plus the test's view of it: a NATS
// client on its bus and an HTTP client for its ports.
type routerProc struct {
	*harness.Proc
	addr    string // proxy listener
	status  string // /health, /routes, /metrics
	natsURL string // the bus, without credentials
	bus     *bus
	client  *http.Client
	started time.Time
}

var errPortTaken = errors.New("a port picked for the router was taken before it could bind")

// startRouter starts a router and returns once it serves its status port and
// its NATS subscriptions answer (a router.greet gets a reply).
func startRouter(t testing.TB, spec routerSpec) *routerProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		r, err := tryStartRouter(t, spec)
		if err == nil {
			return r
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("retrying router start: %v", err)
	}
}

func tryStartRouter(t testing.TB, spec routerSpec) (*routerProc, error) {
	t.Helper()
	cfg := baseRouterConfig()
	natsURL := ""
	if spec.natsURL == "" {
		port := harness.FreePort(t)
		natsURL = "nats://127.0.0.1:" + port
		cfg["nats"] = map[string]any{"embedded_listen": "127.0.0.1:" + port}
	}
	cfg = mergeConfig(cfg, spec.config)
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "router.yml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + harness.FreePort(t)
	status := "127.0.0.1:" + harness.FreePort(t)
	args := []string{"router", "--config", path, "--listen", addr, "--status", status}
	if spec.natsURL != "" {
		args = append(args, "--nats", spec.natsURL)
		natsURL = stripCredentials(spec.natsURL)
	}
	if spec.backendCA != "" {
		args = append(args, "--backend-ca", spec.backendCA)
	}
	started := time.Now()
	p := suite.StartProc(t, "router", args...)
	r := &routerProc{Proc: p, addr: addr, status: status, natsURL: natsURL, started: started,
		client: newHTTPClient(t)}

	// Ready: the status port answers. Fail fast when the process dies.
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.WaitExit(0) {
			if strings.Contains(p.Logs(), "address already in use") {
				return nil, fmt.Errorf("%w: %s", errPortTaken, lastLine(p.Logs()))
			}
			return nil, fmt.Errorf("router exited during start-up (%s): %s", p.State(), p.Logs())
		}
		resp, err := probe.Get("http://" + status + "/is-process-alive-do-not-use-for-loadbalancing")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("router status port %s did not answer within 15s: %v", status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.bus = connectBus(t, natsURL)
	// The greet subscription is made last, so a reply means router.register
	// and router.unregister are subscribed too.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := r.bus.nc.Request("router.greet", nil, 200*time.Millisecond)
		return err
	})
	return r, nil
}

func stripCredentials(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + u[i+1:]
		}
	}
	return u
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func newHTTPClient(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, ResponseHeaderTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		// A redirect from a backend is a response to look at, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// response is what a test looks at: status, headers and the whole body.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) routerError() string { return r.header.Get("X-Cf-Routererror") }

// request sends req to the router's proxy port with Host set to host.
func (r *routerProc) request(host string, req *http.Request) (response, error) {
	req.URL.Scheme = "http"
	req.URL.Host = r.addr
	req.Host = host
	resp, err := r.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("reading the body of %s %s: %w", req.Method, host, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

// get requests http://host/path through the router; headers alternate name, value.
func (r *routerProc) get(t testing.TB, host, path string, headers ...string) response {
	t.Helper()
	resp, err := r.tryGet(host, path, headers...)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	return resp
}

func (r *routerProc) tryGet(host, path string, headers ...string) (response, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+r.addr+path, nil)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return r.request(host, req)
}

// waitForStatus polls host until it answers want, and returns that response.
func (r *routerProc) waitForStatus(t testing.TB, host string, want int, within time.Duration) response {
	t.Helper()
	var last response
	testutil.CheckFor(t, within, 10*time.Millisecond, func() error {
		resp, err := r.tryGet(host, "/")
		if err != nil {
			return err
		}
		last = resp
		if resp.status != want {
			return fmt.Errorf("%s answered %d %q (X-Cf-Routererror %q), want %d", host, resp.status,
				strings.TrimSpace(resp.body), resp.routerError(), want)
		}
		return nil
	})
	return last
}

// statusGet fetches a path on the status port.
func (r *routerProc) statusGet(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := r.client.Get("http://" + r.status + path)
	if err != nil {
		t.Fatalf("GET status %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// logBarrier returns once every log line the router wrote before now has
// reached the test. Logs come through a pipe and may trail the HTTP response
// that follows them; a marker message sent after the response and logged by
// the router (as a validation-error) is behind all of them.
func (r *routerProc) logBarrier(t testing.TB) {
	t.Helper()
	marker := fmt.Sprintf("log-barrier-%d", time.Now().UnixNano())
	r.bus.mustPublish("router.register", []byte(marker))
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(r.Logs(), marker) {
			return fmt.Errorf("the router has not logged %s yet", marker)
		}
		return nil
	})
}

// routeEntry is one endpoint as /routes shows it.
type routeEntry struct {
	Address           string            `json:"address"`
	Protocol          string            `json:"protocol"`
	TLS               bool              `json:"tls"`
	TTL               int               `json:"ttl"`
	Tags              map[string]string `json:"tags"`
	PrivateInstanceID string            `json:"private_instance_id"`
}

func (r *routerProc) routes(t testing.TB) map[string][]routeEntry {
	t.Helper()
	code, body := r.statusGet(t, "/routes")
	if code != http.StatusOK {
		t.Fatalf("/routes answered %d: %s", code, body)
	}
	var out map[string][]routeEntry
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("/routes is not JSON: %v: %s", err, body)
	}
	return out
}

// --- NATS ---------------------------------------------------------------

// registryMessage is gorouter's router.register / router.unregister JSON,
// written out here so the test checks the wire format, not a shared type.
type registryMessage struct {
	Host                    string            `json:"host"`
	Port                    uint16            `json:"port,omitempty"`
	TLSPort                 uint16            `json:"tls_port,omitempty"`
	URIs                    []string          `json:"uris"`
	App                     string            `json:"app,omitempty"`
	PrivateInstanceID       string            `json:"private_instance_id,omitempty"`
	PrivateInstanceIndex    string            `json:"private_instance_index,omitempty"`
	ServerCertDomainSAN     string            `json:"server_cert_domain_san,omitempty"`
	EndpointUpdatedAtNs     int64             `json:"endpoint_updated_at_ns,omitempty"`
	StaleThresholdInSeconds int               `json:"stale_threshold_in_seconds,omitempty"`
	Tags                    map[string]string `json:"tags,omitempty"`
}

// bus is the test's own NATS client: it plays the route emitter.
type bus struct {
	t  testing.TB
	nc *nats.Conn
}

func connectBus(t testing.TB, url string) *bus {
	t.Helper()
	var nc *nats.Conn
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var err error
		nc, err = nats.Connect(url, nats.UserInfo("nats", "nats"), nats.Name("integration-test"),
			nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0),
			nats.Timeout(time.Second))
		return err
	})
	t.Cleanup(nc.Close)
	return &bus{t: t, nc: nc}
}

func (b *bus) publish(subject string, data []byte) error {
	if err := b.nc.Publish(subject, data); err != nil {
		return err
	}
	return b.nc.Flush()
}

func (b *bus) mustPublish(subject string, data []byte) {
	b.t.Helper()
	if err := b.publish(subject, data); err != nil {
		b.t.Fatalf("publish on %s: %v", subject, err)
	}
}

func (b *bus) register(m registryMessage) {
	b.t.Helper()
	b.mustPublish("router.register", mustJSON(b.t, m))
}

func (b *bus) unregister(m registryMessage) {
	b.t.Helper()
	b.mustPublish("router.unregister", mustJSON(b.t, m))
}

// heartbeat re-sends m every interval, as a route emitter does, until the
// test ends. Publishing while the bus is down is buffered by nats.go and sent
// on reconnect.
func (b *bus) heartbeat(m registryMessage, every time.Duration) {
	data := mustJSON(b.t, m)
	ctx := b.t.Context()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				b.nc.Publish("router.register", data)
			}
		}
	}()
	// t.Context is cancelled before cleanups run, so this does not block.
	b.t.Cleanup(func() { <-done })
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startNATS runs `minicf nats` on 127.0.0.1:port and waits until it accepts
// connections.
func startNATS(t testing.TB, port string) *harness.Proc {
	t.Helper()
	p := suite.StartProc(t, "nats", "nats", "--listen", "127.0.0.1:"+port)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p.Exited() {
			t.Fatalf("nats exited during start-up (%s)", p.State())
		}
		if !strings.Contains(p.Logs(), "nats listening on") {
			return errors.New("nats has not said it listens yet")
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	return p
}
