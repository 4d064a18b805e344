package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/minicf/minicf/internal/testutil"
)

// routerReady is how long StartRouter waits for a router's status port.
const routerReady = 20 * time.Second

// baseRouterConfig is the YAML every test router starts from, timers
// shortened as gorouter's integration tests do; the suite's RouterConfig
// (its pruning timers) and then the RouterSpec's Config are laid over it.
func baseRouterConfig() map[string]any {
	return map[string]any{
		"start_response_delay":                "0s",
		"minimum_register_interval":           "1s",
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
// whose keys are replaced one by one. Maps of over are copied, never
// shared with base.
func mergeConfig(base, over map[string]any) map[string]any {
	for k, v := range over {
		if vm, ok := v.(map[string]any); ok {
			bm, ok := base[k].(map[string]any)
			if !ok {
				bm = map[string]any{}
				base[k] = bm
			}
			for kk, vv := range vm {
				bm[kk] = vv
			}
			continue
		}
		base[k] = v
	}
	return base
}

// RouterSpec is what a test asks of its router.
type RouterSpec struct {
	Config    map[string]any // laid over the suite's router config
	NATSURL   string         // external NATS (with credentials); empty starts the embedded one
	BackendCA string         // --backend-ca
}

// Router is a running `minicf router` plus the test's view of it: a NATS
// client on its bus and an HTTP client for its ports.
type Router struct {
	*Proc
	Addr       string // proxy listener
	StatusAddr string // /health, /routes, /metrics
	NATSURL    string // the bus, without credentials
	Bus        *Bus
	Client     *http.Client
	Started    time.Time // just before the process started
}

// StartRouter starts a router on free loopback ports and returns once it
// serves its status port and its NATS subscriptions answer (a router.greet
// gets a reply). It tries other ports when another process took one first.
func (s *Suite) StartRouter(t testing.TB, spec RouterSpec) *Router {
	t.Helper()
	return WithFreshPorts(t, "router", func() (*Router, error) { return s.tryStartRouter(t, spec) })
}

func (s *Suite) tryStartRouter(t testing.TB, spec RouterSpec) (*Router, error) {
	t.Helper()
	cfg := mergeConfig(baseRouterConfig(), s.RouterConfig)
	natsURL := ""
	if spec.NATSURL == "" {
		port := FreePort(t)
		natsURL = "nats://127.0.0.1:" + port
		cfg["nats"] = map[string]any{"embedded_listen": "127.0.0.1:" + port}
	}
	cfg = mergeConfig(cfg, spec.Config)
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "router.yml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + FreePort(t)
	status := "127.0.0.1:" + FreePort(t)
	args := []string{"router", "--config", path, "--listen", addr, "--status", status}
	if spec.NATSURL != "" {
		args = append(args, "--nats", spec.NATSURL)
		natsURL = stripCredentials(spec.NATSURL)
	}
	if spec.BackendCA != "" {
		args = append(args, "--backend-ca", spec.BackendCA)
	}
	started := time.Now()
	p := s.StartProc(t, "router", args...)
	r := &Router{Proc: p, Addr: addr, StatusAddr: status, NATSURL: natsURL, Started: started,
		Client: s.NewHTTPClient(t)}

	// Ready: the status port answers. Fail fast when the process dies.
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(routerReady)
	for {
		if p.WaitExit(0) {
			if PortTaken(p) {
				return nil, fmt.Errorf("%w: %s", ErrPortTaken, lastLine(p.Logs()))
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
			return nil, fmt.Errorf("router status port %s did not answer within %v: %v", status, routerReady, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Bus = s.ConnectBus(t, natsURL)
	// The greet subscription is made last, so a reply means router.register
	// and router.unregister are subscribed too.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := r.Bus.Conn.Request("router.greet", nil, 200*time.Millisecond)
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

// NewHTTPClient is a keep-alive client that bounds every request by the
// suite's HTTPTimeout and does not follow redirects. Its idle connections
// are closed when the test ends.
func (s *Suite) NewHTTPClient(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, ResponseHeaderTimeout: s.HTTPTimeout}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   s.HTTPTimeout,
		// A redirect from a backend is a response to look at, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Response is what a test looks at: status, headers and the whole body.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// RouterError is the router's X-Cf-Routererror header.
func (r Response) RouterError() string { return r.Header.Get("X-Cf-Routererror") }

// Request sends req to the router's proxy port with Host set to host.
func (r *Router) Request(host string, req *http.Request) (Response, error) {
	return r.RequestWith(r.Client, host, req)
}

// RequestWith is Request through client c.
func (r *Router) RequestWith(c *http.Client, host string, req *http.Request) (Response, error) {
	req.URL.Scheme = "http"
	req.URL.Host = r.Addr
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("reading the body of %s %s: %w", req.Method, host, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, nil
}

// Get requests http://host/path through the router and fails the test on
// an error; headers alternate name, value.
func (r *Router) Get(t testing.TB, host, path string, headers ...string) Response {
	t.Helper()
	resp, err := r.TryGet(host, path, headers...)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	return resp
}

// TryGet is Get returning the error.
func (r *Router) TryGet(host, path string, headers ...string) (Response, error) {
	return r.GetWith(r.Client, host, path, headers...)
}

// GetWith is TryGet through client c.
func (r *Router) GetWith(c *http.Client, host, path string, headers ...string) (Response, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+r.Addr+path, nil)
	if err != nil {
		return Response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return r.RequestWith(c, host, req)
}

// WaitForStatus polls host until it answers want, and returns that response.
func (r *Router) WaitForStatus(t testing.TB, host string, want int, within time.Duration) Response {
	t.Helper()
	var last Response
	testutil.CheckFor(t, within, 10*time.Millisecond, func() error {
		resp, err := r.TryGet(host, "/")
		if err != nil {
			return err
		}
		last = resp
		if resp.Status != want {
			return fmt.Errorf("%s answered %d %q (X-Cf-Routererror %q), want %d", host, resp.Status,
				strings.TrimSpace(resp.Body), resp.RouterError(), want)
		}
		return nil
	})
	return last
}

// StatusGet fetches a path on the status port.
func (r *Router) StatusGet(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := r.Client.Get("http://" + r.StatusAddr + path)
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

// LogBarrier returns once every log line the router wrote before now has
// reached the test. Logs come through a pipe and may trail the HTTP response
// that follows them; a marker message sent after the response and logged by
// the router (as a validation-error) is behind all of them.
func (r *Router) LogBarrier(t testing.TB) {
	t.Helper()
	marker := fmt.Sprintf("log-barrier-%d", time.Now().UnixNano())
	r.Bus.MustPublish("router.register", []byte(marker))
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(r.Logs(), marker) {
			return fmt.Errorf("the router has not logged %s yet", marker)
		}
		return nil
	})
}

// RouteEntry is one endpoint as /routes shows it.
type RouteEntry struct {
	Address           string            `json:"address"`
	Protocol          string            `json:"protocol"`
	TLS               bool              `json:"tls"`
	TTL               int               `json:"ttl"`
	Tags              map[string]string `json:"tags"`
	PrivateInstanceID string            `json:"private_instance_id"`
}

// Routes is the router's table, from /routes.
func (r *Router) Routes(t testing.TB) map[string][]RouteEntry {
	t.Helper()
	code, body := r.StatusGet(t, "/routes")
	if code != http.StatusOK {
		t.Fatalf("/routes answered %d: %s", code, body)
	}
	var out map[string][]RouteEntry
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("/routes is not JSON: %v: %s", err, body)
	}
	return out
}

// InstanceIDs is the sorted private_instance_id of host's endpoints.
func (r *Router) InstanceIDs(t testing.TB, host string) []string {
	t.Helper()
	var ids []string
	for _, e := range r.Routes(t)[host] {
		ids = append(ids, e.PrivateInstanceID)
	}
	sort.Strings(ids)
	return ids
}

// WaitForEndpoints polls /routes until host has n endpoints.
func (r *Router) WaitForEndpoints(t testing.TB, host string, n int) {
	t.Helper()
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if eps := r.Routes(t)[host]; len(eps) != n {
			return fmt.Errorf("%s has %d endpoints in /routes, want %d", host, len(eps), n)
		}
		return nil
	})
}

// StartNATS runs `minicf nats` on 127.0.0.1:port and waits until it
// accepts connections.
func (s *Suite) StartNATS(t testing.TB, port string) *Proc {
	t.Helper()
	p := s.StartProc(t, "nats", "nats", "--listen", "127.0.0.1:"+port)
	WaitNATS(t, p, port)
	return p
}

// WaitNATS waits until p, a `minicf nats` on 127.0.0.1:port (just started
// or respawned), says it listens and accepts connections.
func WaitNATS(t testing.TB, p *Proc, port string) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p.Exited() {
			t.Fatalf("nats exited during start-up (%s): %s", p.State(), p.Logs())
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
}
