// Command probe runs a command and, from the moment it starts it, polls a
// route through the router until the route answers a wanted status. It
// prints one line saying how long the command took and when, relative to
// the command's start and to its return, the wanted status first came back:
//
//	probe --router 127.0.0.1:8081 --host m1.apps.localhost --want 200 -- minicf map-route app apps.localhost --hostname m1
//
// prints
//
//	probe host=m1.apps.localhost want=200 exit=0 wall_ms=31.204 start_to_want_ms=38.957 return_to_want_ms=7.753 already=0 probes=34 first_status=404 window_ms=1.312 rtt_ms=0.402 conns=1 start_us=... return_us=... want_us=...
//
// bench/push.sh times push, map-route and unmap-route with it. A curl per
// probe costs a fork and a TCP connection, 15-40 ms on a busy 2-core
// machine, as much as the propagation it measures; one keep-alive
// connection polled every millisecond costs about a tenth of a
// millisecond per probe.
//
// Fields (times in milliseconds with microseconds, or microseconds since
// the Unix epoch for *_us):
//
//	exit               the command's exit status (-1: killed by a signal)
//	wall_ms            command start → command return
//	start_to_want_ms   command start → the first response with the wanted status
//	return_to_want_ms  command return → that response; 0 with already=1 when it
//	                   came before the command returned
//	probes             requests sent, the wanted one included
//	first_status       the status of one probe answered before the command
//	                   starts (0: no answer): what the route said before the
//	                   command could have changed it. Polling starts with the
//	                   command, so a probe sent then may already see its effect
//	                   on a loaded machine; this one cannot.
//	window_ms          from the last unwanted probe's send to the wanted one's
//	                   answer: the change happened in this window ("-" when the
//	                   first probe was already wanted)
//	rtt_ms             the wanted probe's own round trip, the part of the window
//	                   after the router could have seen the change (a new
//	                   route's first request may open a connection to the app)
//	conns              TCP connections opened (1 unless the router closed one)
//	start_us, return_us, want_us  the same instants on the wall clock, to
//	                   compare with other clocks of the host (the BBS's since)
//
// The wanted-status fields are "-" when it never came. Exit status: 0 when
// the wanted status came, 1 on a timeout or an error of probe itself, 2 on a
// usage error, 3 when the command could not start or exited non-zero (the
// line is printed all the same; probing stops when the command fails).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	exitTimeout    = 1
	exitUsage      = 2
	exitCmdFailed  = 3
	maxBody        = 64 << 10 // read at most this much of a body; a longer one drops the connection
	snippetLen     = 200      // of the last body, for messages
	defaultTimeout = 30 * time.Second
)

type config struct {
	router         string
	host           string
	path           string
	want           int
	bodyContains   string
	interval       time.Duration // between probes once the command returned
	intervalDuring time.Duration // between probes while it runs
	timeout        time.Duration // for the wanted status, from the command's return
	requestTimeout time.Duration
	cmdOutput      string // file for the command's stdout+stderr; "" passes them through
	resultFile     string // file for the result line; "" is stdout
	args           []string

	// onReturn, when set, runs once the command returned and before the
	// next probe: tests change the server's answer there.
	onReturn func()
}

type result struct {
	host        string
	want        int
	exit        int
	start       time.Time
	returned    time.Time
	wantAt      time.Time // zero: never
	wantSent    time.Time // when the wanted probe was sent
	probes      int
	firstStatus int
	lastMissAt  time.Time // send time of the last unwanted probe; zero: none
	conns       int64
	lastStatus  int
	lastBody    string
	lastErr     error
}

func (r *result) seen() bool { return !r.wantAt.IsZero() }

func msOf(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
}

// line is the machine-readable result: space-separated key=value pairs.
func (r *result) line() string {
	f := []string{
		"probe",
		"host=" + r.host,
		"want=" + strconv.Itoa(r.want),
		"exit=" + strconv.Itoa(r.exit),
		"wall_ms=" + msOf(r.returned.Sub(r.start)),
	}
	if r.seen() {
		already, ret := "0", r.wantAt.Sub(r.returned)
		if ret <= 0 {
			already, ret = "1", 0
		}
		window := "-"
		if !r.lastMissAt.IsZero() {
			window = msOf(r.wantAt.Sub(r.lastMissAt))
		}
		f = append(f,
			"start_to_want_ms="+msOf(r.wantAt.Sub(r.start)),
			"return_to_want_ms="+msOf(ret),
			"already="+already,
			"probes="+strconv.Itoa(r.probes),
			"first_status="+strconv.Itoa(r.firstStatus),
			"window_ms="+window,
			"rtt_ms="+msOf(r.wantAt.Sub(r.wantSent)))
	} else {
		f = append(f, "start_to_want_ms=-", "return_to_want_ms=-", "already=-",
			"probes="+strconv.Itoa(r.probes), "first_status="+strconv.Itoa(r.firstStatus), "window_ms=-", "rtt_ms=-")
	}
	f = append(f, "conns="+strconv.FormatInt(r.conns, 10),
		"start_us="+strconv.FormatInt(r.start.UnixMicro(), 10),
		"return_us="+strconv.FormatInt(r.returned.UnixMicro(), 10))
	if r.seen() {
		f = append(f, "want_us="+strconv.FormatInt(r.wantAt.UnixMicro(), 10))
	} else {
		f = append(f, "want_us=-")
	}
	return strings.Join(f, " ")
}

// lastAnswer describes the last probe's outcome for an error message.
func (r *result) lastAnswer() string {
	if r.lastErr != nil {
		return "error: " + r.lastErr.Error()
	}
	s := strconv.Itoa(r.lastStatus)
	if b := strings.Join(strings.Fields(r.lastBody), " "); b != "" {
		s += " " + b
	}
	return s
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func parseArgs(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: probe --router HOST:PORT --host HOST --want STATUS [flags] -- COMMAND [ARGS...]")
		fs.PrintDefaults()
	}
	c := &config{}
	fs.StringVar(&c.router, "router", "", "the router's address, host:port (required)")
	fs.StringVar(&c.host, "host", "", "the route's host name, sent as the Host header (required)")
	fs.StringVar(&c.path, "path", "/", "the request's path")
	fs.IntVar(&c.want, "want", 0, "the wanted status, e.g. 200 or 404 (required)")
	fs.StringVar(&c.bodyContains, "body-contains", "", "the wanted response's body must also contain this (within its first 64 KiB)")
	fs.DurationVar(&c.interval, "interval", time.Millisecond, "pause between two probes")
	fs.DurationVar(&c.intervalDuring, "interval-during", -1, "pause between two probes while the command runs (default: --interval)")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "how long to wait for the wanted status after the command returned")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 2*time.Second, "timeout of one probe")
	fs.StringVar(&c.cmdOutput, "cmd-output", "", "write the command's stdout and stderr to this file instead of passing them through")
	fs.StringVar(&c.resultFile, "result", "", "write the result line to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	c.args = fs.Args()
	switch {
	case c.router == "":
		return nil, usageError{"--router is required"}
	case c.host == "":
		return nil, usageError{"--host is required"}
	case c.want < 100 || c.want > 599:
		return nil, usageError{fmt.Sprintf("--want must be an HTTP status (100-599), got %d", c.want)}
	case !strings.HasPrefix(c.path, "/"):
		return nil, usageError{fmt.Sprintf("--path must start with /, got %q", c.path)}
	case c.interval < 0:
		return nil, usageError{"--interval must not be negative"}
	case c.timeout <= 0 || c.requestTimeout <= 0:
		return nil, usageError{"--timeout and --request-timeout must be positive"}
	case len(c.args) == 0:
		return nil, usageError{"no command: put it after --"}
	}
	if _, _, err := net.SplitHostPort(c.router); err != nil {
		return nil, usageError{fmt.Sprintf("--router must be host:port: %v", err)}
	}
	if c.intervalDuring < 0 {
		c.intervalDuring = c.interval
	}
	return c, nil
}

// prober sends the probes over one keep-alive connection, opened again only
// when the router or a long body closes it.
type prober struct {
	cfg    *config
	client *http.Client
	conns  atomic.Int64
}

func newProber(cfg *config) *prober {
	p := &prober{cfg: cfg}
	d := &net.Dialer{Timeout: cfg.requestTimeout}
	tr := &http.Transport{
		Proxy: nil, // never an HTTP_PROXY from the environment
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				p.conns.Add(1)
			}
			return c, err
		},
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	p.client = &http.Client{
		Transport: tr,
		Timeout:   cfg.requestTimeout,
		// A redirect's status is the answer; following it would ask another route.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p
}

// probe sends one request; status 0 means no answer (err says why).
func (p *prober) probe(ctx context.Context) (status int, body string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.cfg.router+p.cfg.path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = p.cfg.host
	req.Header.Set("User-Agent", "minicf-bench-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if len(b) > maxBody {
		// Closing the unread rest drops the connection rather than reading
		// a body of any size; the next probe dials again.
		b = b[:maxBody]
	} else if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(b), nil
}

func (p *prober) wanted(status int, body string) bool {
	return status == p.cfg.want && (p.cfg.bodyContains == "" || strings.Contains(body, p.cfg.bodyContains))
}

// loop probes until the wanted answer, or until ctx ends. It wakes at
// once when returned is closed, so that the command's return is followed
// by a probe without waiting out a long --interval-during.
func (p *prober) loop(ctx context.Context, res *result, mu *sync.Mutex, returned <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	interval := p.cfg.intervalDuring
	for {
		sent := time.Now()
		status, body, err := p.probe(ctx)
		at := time.Now()
		if ctx.Err() != nil {
			return
		}
		mu.Lock()
		res.probes++
		res.lastStatus, res.lastErr = status, err
		ok := p.wanted(status, body)
		if len(body) > snippetLen {
			body = body[:snippetLen]
		}
		res.lastBody = body
		if ok {
			res.wantAt, res.wantSent = at, sent
			mu.Unlock()
			return
		}
		res.lastMissAt = sent
		mu.Unlock()
		select {
		case <-returned:
			interval = p.cfg.interval
		default:
		}
		if interval > 0 {
			t := time.NewTimer(interval)
			select {
			case <-t.C:
			case <-returned:
				t.Stop()
				interval = p.cfg.interval
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// run starts the command and the probing together and waits for both. The
// error is nil when the wanted status came after (or before) a successful
// command; the result is filled in either way.
func run(ctx context.Context, cfg *config, stdout, stderr io.Writer) (*result, error) {
	p := newProber(cfg)
	res := &result{host: cfg.host, want: cfg.want}
	var mu sync.Mutex

	cmd := exec.Command(cfg.args[0], cfg.args[1:]...)
	cmd.Stdin = nil
	if cfg.cmdOutput != "" {
		f, err := os.Create(cfg.cmdOutput)
		if err != nil {
			return res, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = stdout, stderr
	}

	pctx, stop := context.WithCancel(ctx)
	defer stop()
	returned := make(chan struct{})
	done := make(chan struct{})
	// The baseline: answered before the command exists, so it cannot
	// show the command's effect. Not counted in probes (the measured ones).
	res.firstStatus, _, _ = p.probe(ctx)
	res.start = time.Now()
	go p.loop(pctx, res, &mu, returned, done)
	if err := cmd.Start(); err != nil {
		res.returned = time.Now()
		res.exit = -1
		stop()
		<-done
		return res, &cmdError{fmt.Errorf("cannot start %s: %w", cfg.args[0], err)}
	}

	// Signals meant for us (Ctrl-C, timeout(1)) go to the command too.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	for waiting := true; waiting; {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case werr = <-waited:
			waiting = false
		}
	}
	res.returned = time.Now()
	res.exit = cmd.ProcessState.ExitCode()
	if cfg.onReturn != nil {
		cfg.onReturn()
	}
	close(returned)
	if werr != nil {
		stop()
		<-done
		res.conns = p.conns.Load()
		return res, &cmdError{fmt.Errorf("%s exited: %v", strings.Join(cfg.args, " "), werr)}
	}

	timer := time.NewTimer(cfg.timeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		stop()
		<-done
	case <-ctx.Done():
		stop()
		<-done
	}
	mu.Lock()
	defer mu.Unlock()
	res.conns = p.conns.Load()
	if !res.seen() {
		want := strconv.Itoa(cfg.want)
		if cfg.bodyContains != "" {
			want += fmt.Sprintf(" with %q in the body", cfg.bodyContains)
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, fmt.Errorf("%s did not answer %s through %s within %v of the command's return (%d probes; last: %s)",
			cfg.host, want, cfg.router, cfg.timeout, res.probes, res.lastAnswer())
	}
	return res, nil
}

type cmdError struct{ err error }

func (e *cmdError) Error() string { return e.err.Error() }
func (e *cmdError) Unwrap() error { return e.err }

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "probe:", err)
		}
		return exitUsage
	}
	res, err := run(context.Background(), cfg, stdout, stderr)
	out := stdout
	if cfg.resultFile != "" {
		f, ferr := os.Create(cfg.resultFile)
		if ferr != nil {
			fmt.Fprintln(stderr, "probe:", ferr)
			return exitTimeout
		}
		defer f.Close()
		out = f
	}
	if !res.start.IsZero() {
		fmt.Fprintln(out, res.line())
	}
	var ce *cmdError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintln(stderr, "probe:", err)
		return exitCmdFailed
	case err != nil:
		fmt.Fprintln(stderr, "probe:", err)
		return exitTimeout
	}
	return 0
}
