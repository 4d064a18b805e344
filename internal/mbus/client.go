package mbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Client defaults, taken from gorouter so a minicf router notices a dead bus
// as quickly as a real one would, before its routes go stale.
const (
	DefaultPingInterval    = 20 * time.Second
	DefaultReconnectWait   = 500 * time.Millisecond
	DefaultConnectAttempts = 3

	connectRetryDelay = 100 * time.Millisecond

	// A router that falls behind during a registration burst should buffer,
	// not drop: a dropped register is a 404 until the next heartbeat.
	subPendingMsgs  = 131072
	subPendingBytes = 131072 * 1024

	// closeCallbackWait bounds how long Close waits for nats.go to deliver
	// its closed callback, which it always does unless the process is wedged.
	closeCallbackWait = 5 * time.Second
)

// ClientConfig configures Connect.
type ClientConfig struct {
	URLs            []string // nats:// URLs; credentials may be embedded
	User, Password  string
	Name            string
	Logger          *slog.Logger
	PingInterval    time.Duration // default 20s
	ReconnectWait   time.Duration // default 500ms
	ConnectAttempts int           // initial attempts, 100ms apart; default 3
}

// Msg is a received message, detached from nats.go.
type Msg struct {
	Subject string
	Reply   string
	Data    []byte
}

// Subscription is an active subscription.
type Subscription interface {
	Unsubscribe() error
}

// Client is a NATS connection that, once established, reconnects forever and
// logs every state change, so an operator can tell from the log alone when
// the router stopped hearing about routes.
type Client struct {
	nc     *nats.Conn
	log    *slog.Logger
	ping   time.Duration
	secret []string // strings that must never reach a log line or an error

	reconnected chan struct{}
	closedCB    chan struct{}
	closedOnce  sync.Once

	mu           sync.Mutex
	closing      bool
	url          string // last server URL, redacted; nats.go forgets it on disconnect
	downSince    time.Time
	stopTicker   chan struct{} // non-nil while the still-disconnected ticker runs
	subs         map[*subscription]struct{}
	droppedGone  int64 // drops of subscriptions no longer in subs
	tickerWG     sync.WaitGroup
	tickersAlive atomic.Int32 // for tests: Close must leave none
}

// Connect dials the bus, trying ConnectAttempts times before giving up; after
// the first success the connection never gives up again.
func Connect(cfg ClientConfig) (*Client, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("no NATS server URL given")
	}
	secret := secrets(cfg)
	shown := make([]string, len(cfg.URLs))
	for i, raw := range cfg.URLs {
		shown[i] = redactURL(raw)
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("NATS server URL %q is not a valid URL like nats://host:4222", shown[i])
		}
		switch u.Scheme {
		case "nats", "tls":
		default:
			return nil, fmt.Errorf("NATS server URL %q must start with nats:// or tls://", shown[i])
		}
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = DefaultReconnectWait
	}
	if cfg.ConnectAttempts <= 0 {
		cfg.ConnectAttempts = DefaultConnectAttempts
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Client{
		log:         log,
		ping:        cfg.PingInterval,
		secret:      secret,
		reconnected: make(chan struct{}, 1),
		closedCB:    make(chan struct{}),
		subs:        make(map[*subscription]struct{}),
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.PingInterval(cfg.PingInterval),
		nats.MaxPingsOutstanding(2),
		// Initial attempts are ours, so a misconfigured URL fails fast
		// instead of hanging the caller in nats.go's background retry.
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(c.onDisconnect),
		nats.ReconnectHandler(c.onReconnect),
		nats.ClosedHandler(c.onClosed),
		nats.ErrorHandler(c.onError),
	}
	if cfg.User != "" || cfg.Password != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}

	servers := strings.Join(cfg.URLs, ",")
	var lastErr error
	for attempt := 1; attempt <= cfg.ConnectAttempts; attempt++ {
		nc, err := nats.Connect(servers, opts...)
		if err == nil {
			c.nc = nc
			c.mu.Lock()
			c.url = c.scrub(nc.ConnectedUrlRedacted())
			c.mu.Unlock()
			log.Info("nats-connected", "url", c.url, "attempt", attempt)
			return c, nil
		}
		lastErr = err
		if attempt < cfg.ConnectAttempts {
			time.Sleep(connectRetryDelay)
		}
	}
	return nil, fmt.Errorf("cannot connect to NATS at %s after %d %s: %s",
		strings.Join(shown, ", "), cfg.ConnectAttempts, plural(cfg.ConnectAttempts, "attempt", "attempts"),
		c.scrub(lastErr.Error()))
}

// Publish sends data on subject.
func (c *Client) Publish(subject string, data []byte) error {
	if err := c.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("cannot publish on %s: %w", subject, err)
	}
	return nil
}

// PublishRequest sends data on subject, asking for replies on reply.
func (c *Client) PublishRequest(subject, reply string, data []byte) error {
	if err := c.nc.PublishRequest(subject, reply, data); err != nil {
		return fmt.Errorf("cannot publish on %s: %w", subject, err)
	}
	return nil
}

// Subscribe delivers every message on subject to handler, one at a time, on
// a goroutine owned by nats.go. The subscription survives reconnects.
func (c *Client) Subscribe(subject string, handler func(Msg)) (Subscription, error) {
	if handler == nil {
		return nil, errors.New("subscribe needs a message handler")
	}
	ns, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		handler(Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data})
	})
	if err != nil {
		return nil, fmt.Errorf("cannot subscribe to %s: %w", subject, err)
	}
	if err := ns.SetPendingLimits(subPendingMsgs, subPendingBytes); err != nil {
		_ = ns.Unsubscribe()
		return nil, fmt.Errorf("cannot set pending limits on %s: %w", subject, err)
	}
	s := &subscription{c: c, ns: ns}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s, nil
}

// NewInbox returns a unique subject for replies.
func (c *Client) NewInbox() string { return c.nc.NewInbox() }

// Request publishes data on subject and waits for the first reply, until ctx
// is done.
func (c *Client) Request(ctx context.Context, subject string, data []byte) (Msg, error) {
	m, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return Msg{}, fmt.Errorf("request on %s: %w", subject, err)
	}
	return Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data}, nil
}

// Connected reports whether the connection is up right now.
func (c *Client) Connected() bool { return c.nc.IsConnected() }

// Reconnected signals after each successful reconnect. Notifications
// coalesce: a reader that was busy sees one value for several reconnects,
// which is all a router needs to republish router.start.
func (c *Client) Reconnected() <-chan struct{} { return c.reconnected }

// Dropped counts messages thrown away because a subscriber fell behind its
// pending limits, over all subscriptions this client ever had.
func (c *Client) Dropped() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.droppedGone
	for s := range c.subs {
		if d, err := s.ns.Dropped(); err == nil {
			n += int64(d)
		}
	}
	return n
}

// Flush waits until the server has processed everything published so far.
func (c *Client) Flush() error {
	if err := c.nc.Flush(); err != nil {
		return fmt.Errorf("cannot flush NATS connection: %w", err)
	}
	return nil
}

// Close closes the connection without draining. When it returns, the
// still-disconnected ticker has ended and the closed event has been logged.
// It is safe to call more than once.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.stopTickerLocked()
	// Dropped() on a closed subscription fails, so keep the counts now.
	for s := range c.subs {
		if d, err := s.ns.Dropped(); err == nil {
			c.droppedGone += int64(d)
		}
		delete(c.subs, s)
	}
	c.mu.Unlock()
	c.tickerWG.Wait()
	c.nc.Close()
	select {
	case <-c.closedCB:
	case <-time.After(closeCallbackWait):
	}
}

type subscription struct {
	c  *Client
	ns *nats.Subscription
}

func (s *subscription) Unsubscribe() error {
	s.c.mu.Lock()
	if _, ok := s.c.subs[s]; ok {
		if d, err := s.ns.Dropped(); err == nil {
			s.c.droppedGone += int64(d)
		}
		delete(s.c.subs, s)
	}
	s.c.mu.Unlock()
	if err := s.ns.Unsubscribe(); err != nil {
		return fmt.Errorf("cannot unsubscribe from %s: %w", s.ns.Subject, err)
	}
	return nil
}

func (c *Client) onDisconnect(_ *nats.Conn, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		// Our own Close also fires this callback; that is not an outage.
		return
	}
	attrs := []any{"url", c.url}
	if err != nil {
		attrs = append(attrs, "error", c.scrub(err.Error()))
	}
	c.log.Warn("nats-connection-disconnected", attrs...)
	c.downSince = time.Now()
	if c.stopTicker != nil {
		return
	}
	stop := make(chan struct{})
	c.stopTicker = stop
	c.tickerWG.Add(1)
	c.tickersAlive.Add(1)
	go c.stillDisconnected(stop, c.downSince)
}

// stillDisconnected repeats the outage in the log, because a single
// disconnected line scrolls away while routes quietly age towards pruning.
func (c *Client) stillDisconnected(stop <-chan struct{}, since time.Time) {
	defer c.tickerWG.Done()
	defer c.tickersAlive.Add(-1)
	t := time.NewTicker(c.ping)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.log.Warn("nats-connection-still-disconnected",
				"down_for", time.Since(since).Round(time.Millisecond).String())
		}
	}
}

func (c *Client) stopTickerLocked() {
	if c.stopTicker != nil {
		close(c.stopTicker)
		c.stopTicker = nil
	}
}

func (c *Client) onReconnect(nc *nats.Conn) {
	server := c.scrub(nc.ConnectedUrlRedacted())
	c.mu.Lock()
	c.stopTickerLocked()
	c.url = server
	since := c.downSince
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return
	}
	attrs := []any{"url", server}
	if !since.IsZero() {
		attrs = append(attrs, "down_for", time.Since(since).Round(time.Millisecond).String())
	}
	c.log.Info("nats-connection-reconnected", attrs...)
	select {
	case c.reconnected <- struct{}{}:
	default:
	}
}

func (c *Client) onClosed(*nats.Conn) {
	c.closedOnce.Do(func() {
		c.log.Info("nats-connection-closed")
		close(c.closedCB)
	})
}

func (c *Client) onError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	if errors.Is(err, nats.ErrSlowConsumer) {
		attrs := []any{"subject", subject}
		if sub != nil {
			if d, derr := sub.Dropped(); derr == nil {
				attrs = append(attrs, "dropped", d)
			}
		}
		c.log.Warn("nats-slow-consumer", attrs...)
		return
	}
	c.log.Warn("nats-error", "subject", subject, "error", c.scrub(err.Error()))
}

// scrub removes passwords from text that came from nats.go, which may echo a
// server URL back with its credentials. Only the userinfo form ":password@"
// is replaced: a bare replace of a password such as "nats" would also blank
// the scheme of every URL.
func (c *Client) scrub(s string) string {
	for _, p := range c.secret {
		s = strings.ReplaceAll(s, ":"+p+"@", ":xxxxx@")
	}
	return s
}

// secrets lists the passwords to scrub, plain and URL-escaped.
func secrets(cfg ClientConfig) []string {
	var out []string
	add := func(p string) {
		if p != "" {
			out = append(out, p)
		}
	}
	add(cfg.Password)
	for _, raw := range cfg.URLs {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				add(p)
				add(url.QueryEscape(p))
			}
		}
	}
	return out
}

// redactURL hides the password of a URL shown to a person. An unparseable URL
// may still carry credentials, so everything before its '@' goes.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndexByte(raw, '@'); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				return raw[:j+3] + "xxxxx@" + raw[i+1:]
			}
			return "xxxxx@" + raw[i+1:]
		}
		return raw
	}
	return u.Redacted()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
