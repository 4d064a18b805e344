package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/testutil"
)

// Issue 8 "bad input": malformed and oversized NATS messages, malformed BBS
// and Cloud Controller requests, slow-loris clients, 1 MB of headers and
// invalid Host headers, while a steady load runs through the router. Each
// gets its documented answer, no component crashes, and nothing stored
// changes (the router's table, the BBS's LRPs, the CC's apps and routes).
//
// The world: NATS, a router, a BBS without auctioneer or cells (its
// instance stays UNCLAIMED, so its records hold still), a route emitter
// and a Cloud Controller, each its own process; the load's app is a test
// backend registered over NATS.
func TestFaults_BadInput(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	natsPort := harness.FreePort(t)
	natsProc := suite.StartNATS(t, natsPort)
	natsURL := "nats://nats:nats@127.0.0.1:" + natsPort
	bbsAddr := "127.0.0.1:" + harness.FreePort(t)
	bbsProc := suite.StartProc(t, "bbs", "bbs", "--home", home, "--listen", bbsAddr, "--auctioneer", "",
		"--converge-interval", "1s", "--cell-ttl", "3s")
	bbsProc.WaitForMsg(t, "bbs-listening", 1, 20*time.Second)
	r := suite.StartRouter(t, harness.RouterSpec{NATSURL: natsURL, BackendCA: filepath.Join(home, "identity", identity.CACertFile)})
	emitter := suite.StartProc(t, "route-emitter", "route-emitter", "--bbs", "https://"+bbsAddr, "--nats", natsURL,
		"--home", home, "--sync-interval", "2s")
	emitter.WaitForMsg(t, "route-emitter-started", 1, 30*time.Second)
	ccAddr := "127.0.0.1:" + harness.FreePort(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	ccProc := suite.StartProc(t, "cc", "cc", "--listen", ccAddr, "--internal-listen", "127.0.0.1:"+harness.FreePort(t),
		"--bbs", "https://"+bbsAddr, "--nats", natsURL, "--home", home, "--admin-token-file", tokenFile)
	ccProc.WaitForMsg(t, "cc-listening", 1, 30*time.Second)
	var token string
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		b, err := os.ReadFile(tokenFile)
		token = strings.TrimSpace(string(b))
		if err != nil || token == "" {
			return fmt.Errorf("no admin token yet: %v", err)
		}
		return nil
	})
	procs := []*harness.Proc{natsProc, bbsProc, r.Proc, emitter, ccProc}

	ca, err := identity.LoadOrCreate(filepath.Join(home, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ca.IssueComponent("faults-test", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bbsTLS, err := ca.ClientTLS(cred)
	if err != nil {
		t.Fatal(err)
	}
	bbsClient := bbs.NewClient("https://"+bbsAddr, bbsTLS)

	// Stored state worth keeping: a DesiredLRP (and its UNCLAIMED instance)
	// in the BBS, an app in the CC, a route in the router.
	ctx := context.Background()
	if err := bbsClient.DesireLRP(ctx, suite.DiegoApp("kept", 1)); err != nil {
		t.Fatal(err)
	}
	cc := &ccClient{t: t, base: "http://" + ccAddr, token: token}
	space := cc.firstGUID("/v3/spaces")
	if code, body := cc.do("POST", "/v3/apps", fmt.Sprintf(`{"name":"kept","relationships":{"space":{"data":{"guid":%q}}}}`, space)); code != http.StatusCreated {
		t.Fatalf("creating an app: %d %s", code, body)
	}
	app := newBackend(t, "steady", harness.BackendOptions{})
	const host = "steady.example.com"
	r.Bus.Register(app.reg(host, "steady-0"))
	r.Bus.Heartbeat(app.reg(host, "steady-0"), registerInterval)
	r.WaitForStatus(t, host, http.StatusOK, 2*time.Second)

	stored := func() string {
		var b strings.Builder
		d, err := bbsClient.DesiredLRPs(ctx, bbs.DesiredLRPsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := bbsClient.ActualLRPs(ctx, bbs.ActualLRPsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []any{d, a} {
			j, _ := json.Marshal(v)
			b.Write(j)
			b.WriteString("\n")
		}
		for _, p := range []string{"/v3/apps", "/v3/routes", "/v3/spaces", "/v3/organizations", "/v3/domains", "/v3/packages"} {
			code, body := cc.do("GET", p, "")
			fmt.Fprintf(&b, "%s %d %s\n", p, code, body)
		}
		_, routes := r.StatusGet(t, "/routes")
		b.WriteString(routes)
		return b.String()
	}
	before := stored()

	l := startLoad(t, "bad input", 2, 5*time.Millisecond, func(c *http.Client) shot {
		resp, err := r.GetWith(c, host, "/")
		switch {
		case err != nil:
			return shot{v: vFailed, desc: err.Error()}
		case resp.Status != http.StatusOK:
			return shot{v: vFailed, desc: fmt.Sprintf("%d %s", resp.Status, resp.RouterError())}
		case resp.Body != "steady":
			return shot{v: vMisrouted, desc: resp.Body}
		}
		return shot{v: vOK, key: resp.Body}
	})
	l.waitProgress(t, 20, 5*time.Second)

	// Slow-loris clients first: they run while everything else happens.
	var lorisWG sync.WaitGroup
	loris := func(name, addr string, tlsConf *tls.Config, n int, within time.Duration) {
		for i := 0; i < n; i++ {
			lorisWG.Go(func() {
				took, got, err := slowLoris(addr, tlsConf, within+5*time.Second)
				switch {
				case err != nil:
					t.Errorf("slow-loris on the %s: %v", name, err)
				case len(got) > 0 && !bytes.HasPrefix(got, []byte("HTTP/1.1 408")):
					t.Errorf("slow-loris on the %s: answered %q, want the connection closed (or a 408)", name, firstLine(got))
				case took > within+2*time.Second:
					t.Errorf("slow-loris on the %s: closed after %v, want about %v", name, took, within)
				case i == 0:
					t.Logf("slow-loris on the %s: connection closed after %v (%q)", name, took.Round(time.Millisecond), firstLine(got))
				}
			})
		}
	}
	loris("router", r.Addr, nil, 50, 300*time.Millisecond) // read_header_timeout
	loris("BBS", bbsAddr, bbsTLS, 5, 10*time.Second)       // ReadHeaderTimeout, not configurable
	loris("CC", ccAddr, nil, 5, 10*time.Second)

	t.Run("NATS", func(t *testing.T) {
		invalid := r.CountMsg("validation-error")
		bad := [][2]string{
			{"router.register", `{"host": "127.0.0.1", "port": 80, "uris": [`},
			{"router.register", `not json at all`},
			{"router.register", `{"port": 8080, "uris": ["nohost.example.com"]}`},
			{"router.register", `{"host": "127.0.0.1 ; rm", "port": 8080, "uris": ["badhost.example.com"]}`},
			{"router.register", `{"host": "127.0.0.1", "uris": ["noport.example.com"]}`},
			{"router.register", `{"host": "127.0.0.1", "port": 70000, "uris": ["bigport.example.com"]}`},
			{"router.register", `{"host": "127.0.0.1", "port": -1, "uris": ["negport.example.com"]}`},
			{"router.register", `{"host": "127.0.0.1", "port": 8080, "uris": []}`},
			{"router.register", `{"host": "127.0.0.1", "port": 8080, "uris": "notalist.example.com"}`},
			{"router.register", `{"host": "127.0.0.1", "port": 8080, "uris": ["https://scheme.example.com"]}`},
			{"router.register", `{"host": "127.0.0.1", "port": 8080, "uris": ["` + strings.Repeat("a", 2000) + `.example.com"]}`},
			{"router.register", `{"host": "127.0.0.1", "port": 8080, "uris": ["rs.example.com"], "route_service_url": "http://plain.example.com"}`},
			{"router.register", `{"host": "127.0.0.1", "port": 8080, "uris": ["stale.example.com"], "stale_threshold_in_seconds": -5}`},
			{"router.register", `{"host": "127.0.0.1", "port": 8080, "uris": ["proto.example.com"], "protocol": "gopher"}`},
			{"router.register", string(harness.MustJSON(t, harness.RegistryMessage{Host: "127.0.0.1", Port: app.Port(), URIs: []string{"big.example.com"},
				Tags: map[string]string{"padding": strings.Repeat("x", 70<<10)}}))},
			{"router.unregister", `{"host": 12, "uris": {}}`},
			{"router.unregister", `{"host": "127.0.0.1", "port": ` + fmt.Sprint(app.Port()) + `, "uris": ["` + host + `"], "tls_port": "x"}`},
		}
		for _, m := range bad {
			r.Bus.MustPublish(m[0], []byte(m[1]))
		}
		r.WaitForMsg(t, "validation-error", invalid+len(bad), 5*time.Second)
		// router.start and router.greet with garbage: the emitter says so
		// and carries on; the router still answers greetings.
		startInvalid := emitter.CountMsg("router-start-invalid")
		r.Bus.MustPublish("router.start", []byte(`{"id": 7, "minimumRegisterIntervalInSeconds": "soon"`))
		r.Bus.MustPublish("router.greet", []byte(strings.Repeat("\x00garbage", 1000)))
		emitter.WaitForMsg(t, "router-start-invalid", startInvalid+1, 5*time.Second)
		if _, err := r.Bus.Conn.Request("router.greet", []byte("??"), 2*time.Second); err != nil {
			t.Errorf("router.greet with a garbage body got no reply: %v", err)
		}
		// Over NATS's max_payload (1 MiB): the server refuses it and closes
		// that client alone.
		if reply := natsOversized(t, "127.0.0.1:"+natsPort, 2<<20); !strings.Contains(reply, "Maximum Payload") {
			t.Errorf("a 2 MiB publish got %q from NATS, want -ERR 'Maximum Payload Violation'", reply)
		}
		if _, err := r.Bus.Conn.Request("router.greet", nil, 2*time.Second); err != nil {
			t.Errorf("after the bad messages the router does not answer router.greet: %v", err)
		}
		t.Logf("%d invalid registry messages: %d validation-error lines from the router", len(bad), r.CountMsg("validation-error")-invalid)
	})

	t.Run("router", func(t *testing.T) {
		// Every bad request asks for /bad, so the backend can tell if one got through.
		for _, c := range []struct {
			name, raw string
			status    int
			rerr      string
		}{
			{"empty Host", "GET /bad HTTP/1.1\r\nHost: \r\n\r\n", 400, "empty_host"},
			{"Host with a space", "GET /bad HTTP/1.1\r\nHost: bad host\r\n\r\n", 400, ""},
			{"Host with a control character", "GET /bad HTTP/1.1\r\nHost: bad\x01host\r\n\r\n", 400, ""},
			{"two Host headers", "GET /bad HTTP/1.1\r\nHost: " + host + "\r\nHost: other.example.com\r\n\r\n", 400, ""},
			{"no Host in HTTP/1.1", "GET /bad HTTP/1.1\r\n\r\n", 400, ""},
			{"garbage request line", "HELLO THERE\r\n\r\n", 400, ""},
			{"1 MiB of headers", megaHeaders("GET /bad HTTP/1.1\r\nHost: " + host + "\r\n"), 431, ""},
			// Hosts that parse but name no route.
			{"unknown Host", "GET /bad HTTP/1.1\r\nHost: nosuch.example.com\r\n\r\n", 404, "unknown_route"},
			{"unclosed IPv6 Host", "GET /bad HTTP/1.1\r\nHost: [::1\r\n\r\n", 404, "unknown_route"},
			{"Host of 2000 characters", "GET /bad HTTP/1.1\r\nHost: " + strings.Repeat("h", 2000) + ".example.com\r\n\r\n", 404, "unknown_route"},
		} {
			resp, err := rawHTTP(r.Addr, nil, c.raw)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if resp.Status != c.status || c.rerr != "" && resp.RouterError() != c.rerr {
				t.Errorf("%s: %d (X-Cf-Routererror %q), want %d %q", c.name, resp.Status, resp.RouterError(), c.status, c.rerr)
			}
		}
		if n := app.HitsForPath("/bad"); n != 0 {
			t.Errorf("%d of the bad requests reached the backend", n)
		}
		// 100 KiB of headers are fine.
		if resp, err := r.TryGet(host, "/", "X-Big", strings.Repeat("a", 100<<10)); err != nil || resp.Status != http.StatusOK {
			t.Errorf("100 KiB of headers: %d %v", resp.Status, err)
		}
	})

	t.Run("BBS", func(t *testing.T) {
		for _, c := range []struct {
			name, path, body string
			status           int
			errType          string
		}{
			{"invalid JSON", bbs.PathDesireLRP, `{"desired_lrp": {`, 400, bbs.ErrTypeInvalidJSON},
			{"wrong JSON types", bbs.PathDesireLRP, `{"desired_lrp": {"process_guid": 7, "instances": "two"}}`, 400, bbs.ErrTypeInvalidJSON},
			{"no desired_lrp", bbs.PathDesireLRP, `{}`, 400, bbs.ErrTypeInvalidRequest},
			{"invalid DesiredLRP", bbs.PathDesireLRP, `{"desired_lrp": {"process_guid": "bad guid!", "domain": "cf-apps", "instances": -3}}`, 400, bbs.ErrTypeInvalidRecord},
			{"update of an unknown LRP", bbs.PathUpdateDesiredLRP, `{"process_guid": "nosuch", "update": {"instances": 2}}`, 404, bbs.ErrTypeResourceNotFound},
			{"claim without instance key", bbs.PathClaimActualLRP, `{"process_guid": "kept", "index": 0}`, 400, bbs.ErrTypeInvalidRequest},
			{"start without net info", bbs.PathStartActualLRP, `{"actual_lrp_key": {"process_guid": "kept", "index": 0}}`, 400, bbs.ErrTypeInvalidRequest},
			{"oversized body", bbs.PathDesireLRP, `{"desired_lrp": {"annotation": "` + strings.Repeat("x", 2<<20) + `"}}`, 413, bbs.ErrTypeRequestTooLarge},
			{"unknown endpoint", "/v1/no/such/thing", `{}`, 404, bbs.ErrTypeInvalidRequest},
		} {
			resp, err := rawHTTP(bbsAddr, bbsTLS, "POST "+c.path+" HTTP/1.1\r\nHost: bbs\r\nContent-Type: application/json\r\n"+
				fmt.Sprintf("Content-Length: %d\r\n\r\n", len(c.body))+c.body)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			var e struct {
				Error *struct{ Type, Message string } `json:"error"`
			}
			json.Unmarshal([]byte(resp.Body), &e)
			if resp.Status != c.status || e.Error == nil || e.Error.Type != c.errType {
				t.Errorf("%s: %d %s, want %d with error type %s", c.name, resp.Status, clip(resp.Body), c.status, c.errType)
			}
		}
		resp, err := rawHTTP(bbsAddr, bbsTLS, megaHeaders("POST "+bbs.PathPing+" HTTP/1.1\r\nHost: bbs\r\n"))
		if err != nil || resp.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("1 MiB of headers: %d %v, want 431", resp.Status, err)
		}
		// Without a client certificate from the foundation CA: no TLS.
		noCert := &tls.Config{RootCAs: bbsTLS.RootCAs}
		if _, err := rawHTTP(bbsAddr, noCert, "POST "+bbs.PathPing+" HTTP/1.1\r\nHost: bbs\r\nContent-Length: 2\r\n\r\n{}"); err == nil {
			t.Error("the BBS answered a client without a certificate")
		}
		if err := bbsClient.Ping(ctx); err != nil {
			t.Errorf("the BBS does not answer a good request after the bad ones: %v", err)
		}
	})

	t.Run("CC", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path, auth, body string
			status                         int
			title                          string
		}{
			{"no token", "GET", "/v3/apps", "-", "", 401, "CF-NotAuthenticated"},
			{"garbage token", "GET", "/v3/apps", "bearer not.a.token", "", 401, "CF-InvalidAuthToken"},
			{"wrong scheme", "GET", "/v3/apps", "Basic YWRtaW46YWRtaW4=", "", 401, "CF-InvalidAuthToken"},
			{"invalid JSON", "POST", "/v3/apps", "", `{"name": `, 400, "CF-MessageParseError"},
			{"wrong JSON types", "POST", "/v3/apps", "", `{"name": 12, "relationships": "space"}`, 400, "CF-MessageParseError"},
			{"app in no space", "POST", "/v3/apps", "", `{"name": "orphan", "relationships": {"space": {"data": {"guid": "nosuch"}}}}`, 422, "CF-UnprocessableEntity"},
			{"oversized body", "POST", "/v3/apps", "", `{"name": "` + strings.Repeat("x", 2<<20) + `"}`, 413, "CF-RequestEntityTooLarge"},
			{"bad page", "GET", "/v3/apps?page=0", "", "", 400, "CF-BadQueryParameter"},
			{"bad per_page", "GET", "/v3/apps?per_page=1000000", "", "", 400, "CF-BadQueryParameter"},
			{"unknown endpoint", "GET", "/v3/no_such_things", "", "", 404, "CF-NotFound"},
			{"unknown app", "GET", "/v3/apps/nosuch", "", "", 404, "CF-NotFound"},
			{"route with a bad host", "POST", "/v3/routes", "", `{"host": "bad host!", "relationships": {"space": {"data": {"guid": "` + space + `"}}, "domain": {"data": {"guid": "nosuch"}}}}`, 422, "CF-UnprocessableEntity"},
		} {
			auth := "Authorization: bearer " + token + "\r\n"
			switch c.auth {
			case "-":
				auth = ""
			case "":
			default:
				auth = "Authorization: " + c.auth + "\r\n"
			}
			resp, err := rawHTTP(ccAddr, nil, c.method+" "+c.path+" HTTP/1.1\r\nHost: "+ccAddr+"\r\n"+auth+
				"Content-Type: application/json\r\n"+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(c.body))+c.body)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			var e struct {
				Errors []struct {
					Code   int    `json:"code"`
					Title  string `json:"title"`
					Detail string `json:"detail"`
				} `json:"errors"`
			}
			json.Unmarshal([]byte(resp.Body), &e)
			if resp.Status != c.status || len(e.Errors) != 1 || e.Errors[0].Title != c.title {
				t.Errorf("%s: %d %s, want %d %s", c.name, resp.Status, clip(resp.Body), c.status, c.title)
			}
		}
		for _, c := range []struct {
			name, raw string
			status    int
		}{
			{"1 MiB of headers", megaHeaders("GET /v3/apps HTTP/1.1\r\nHost: " + ccAddr + "\r\nAuthorization: bearer " + token + "\r\n"), 431},
			{"Host with a space", "GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", 400},
			{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		} {
			resp, err := rawHTTP(ccAddr, nil, c.raw)
			if err != nil || resp.Status != c.status {
				t.Errorf("%s: %d %v, want %d", c.name, resp.Status, err, c.status)
			}
		}
		// A Host that is not a plain host:port never makes it into links.
		resp, err := rawHTTP(ccAddr, nil, "GET / HTTP/1.1\r\nHost: evil.example.com/x?\r\n\r\n")
		if err == nil && resp.Status == http.StatusOK && strings.Contains(resp.Body, "evil.example.com") {
			t.Errorf("GET / with Host evil.example.com/x? put it in the links: %s", clip(resp.Body))
		}
	})

	lorisWG.Wait()
	l.waitProgress(t, 20, 5*time.Second)
	l.expectClean(t)
	for _, p := range procs {
		p.Alive(t)
	}
	if after := stored(); after != before {
		t.Errorf("bad input changed what is stored:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// ccClient talks to the Cloud Controller with the admin token.
type ccClient struct {
	t     testing.TB
	base  string
	token string
}

func (c *ccClient) do(method, path, body string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *ccClient) firstGUID(path string) string {
	c.t.Helper()
	code, body := c.do("GET", path, "")
	var l struct {
		Resources []struct {
			GUID string `json:"guid"`
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(body), &l); err != nil || code != http.StatusOK || len(l.Resources) == 0 {
		c.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return l.Resources[0].GUID
}

// rawHTTP writes raw on a new connection (TLS when tlsConf is set) and
// reads one response. The write runs on its own goroutine: a server that
// refuses a huge request may answer and close before reading all of it.
func rawHTTP(addr string, tlsConf *tls.Config, raw string) (harness.Response, error) {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return harness.Response{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return harness.Response{}, fmt.Errorf("no response: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return harness.Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, nil
}

// megaHeaders completes a request head with just over 1 MiB of headers.
func megaHeaders(head string) string {
	var sb strings.Builder
	sb.WriteString(head)
	for i := 0; sb.Len() < 1<<20+16<<10; i++ {
		fmt.Fprintf(&sb, "X-Filler-%d: %s\r\n", i, strings.Repeat("b", 4000))
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// slowLoris sends a request line and one header, then nothing, and reports
// how long the server took to close the connection and what it sent.
func slowLoris(addr string, tlsConf *tls.Config, limit time.Duration) (time.Duration, []byte, error) {
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.Dial("tcp", addr, tlsConf)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: loris.example.com\r\n"); err != nil {
		return 0, nil, err
	}
	c.SetReadDeadline(time.Now().Add(limit))
	got, err := io.ReadAll(c)
	took := time.Since(start)
	if err != nil {
		return took, got, fmt.Errorf("not closed within %v: %v", limit, err)
	}
	return took, got, nil
}

// natsOversized publishes size bytes over a raw NATS connection and returns
// what the server said.
func natsOversized(t testing.TB, addr string, size int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	go func() {
		fmt.Fprintf(c, "CONNECT {\"user\":\"nats\",\"pass\":\"nats\",\"verbose\":false,\"pedantic\":false}\r\nPUB router.register %d\r\n", size)
		c.Write(bytes.Repeat([]byte("x"), size))
		io.WriteString(c, "\r\n")
	}()
	var out strings.Builder
	for {
		line, err := br.ReadString('\n')
		out.WriteString(line)
		if err != nil || strings.HasPrefix(line, "-ERR") {
			return strings.TrimSpace(out.String())
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(s)
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
