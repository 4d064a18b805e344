package mbus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/internal/testutil"
)

const waitLong = 10 * time.Second

func receive(t *testing.T, ch <-chan Msg) Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(waitLong):
		t.Fatal("no message within", waitLong)
		return Msg{}
	}
}

func TestClientPublishSubscribe(t *testing.T) {
	t.Parallel()
	s := startServer(t, 0)
	sub := connect(t, s, ClientConfig{Name: "sub"})
	pub := connect(t, s, ClientConfig{Name: "pub"})

	got := make(chan Msg, 10)
	subscription, err := sub.Subscribe(SubjectAll, func(m Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"host":"10.0.0.1","port":8080,"uris":["a.apps.localhost"]}`)
	if err := pub.Publish(SubjectRegister, body); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishRequest(SubjectGreet, "reply.here", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m := receive(t, got)
	if m.Subject != SubjectRegister || string(m.Data) != string(body) || m.Reply != "" {
		t.Fatalf("got %+v", m)
	}
	m = receive(t, got)
	if m.Subject != SubjectGreet || string(m.Data) != "hi" || m.Reply != "reply.here" {
		t.Fatalf("got %+v", m)
	}
	if !sub.Connected() {
		t.Fatal("Connected() = false on a live connection")
	}
	if d := sub.Dropped(); d != 0 {
		t.Fatalf("Dropped() = %d, want 0", d)
	}

	if err := subscription.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(SubjectRegister, body); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	// A round trip through the subscriber's connection orders after the
	// publish, so anything still to arrive would be here by now.
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		t.Fatalf("message after Unsubscribe: %+v", m)
	default:
	}
	if _, err := sub.Subscribe("x", nil); err == nil {
		t.Fatal("Subscribe with a nil handler succeeded")
	}
}

func TestClientRequestReply(t *testing.T) {
	t.Parallel()
	s := startServer(t, 0)
	responder := connect(t, s, ClientConfig{})
	requester := connect(t, s, ClientConfig{})

	_, err := responder.Subscribe(SubjectGreet, func(m Msg) {
		_ = responder.Publish(m.Reply, append([]byte("hello "), m.Data...))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	reply, err := requester.Request(ctx, SubjectGreet, []byte("router"))
	if err != nil {
		t.Fatal(err)
	}
	if string(reply.Data) != "hello router" {
		t.Fatalf("reply = %q", reply.Data)
	}

	// Nobody listens here: the server says so at once rather than timing out.
	_, err = requester.Request(ctx, "nobody.home", nil)
	if err == nil || !strings.Contains(err.Error(), "nobody.home") {
		t.Fatalf("Request to no responders = %v", err)
	}

	inbox := requester.NewInbox()
	if inbox == "" || inbox == requester.NewInbox() {
		t.Fatalf("NewInbox not unique: %q", inbox)
	}
}

func TestClientReconnect(t *testing.T) {
	t.Parallel()
	first := startServer(t, 0)
	_, portStr, err := net.SplitHostPort(first.Addr())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)

	log, buf := newTestLogger()
	c := connect(t, first, ClientConfig{Logger: log, ReconnectWait: 20 * time.Millisecond})
	got := make(chan Msg, 100)
	if _, err := c.Subscribe(SubjectRegister, func(m Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.count("nats-connected") != 1 {
		t.Fatalf("no nats-connected line:\n%s", buf)
	}

	first.Stop()
	testutil.CheckFor(t, waitLong, 5*time.Millisecond, func() error {
		if buf.count("nats-connection-disconnected") == 0 {
			return errors.New("no nats-connection-disconnected line yet")
		}
		if c.Connected() {
			return errors.New("Connected() is still true")
		}
		return nil
	})

	second := startServer(t, port)
	testutil.CheckFor(t, waitLong, 5*time.Millisecond, func() error {
		if buf.count("nats-connection-reconnected") == 0 {
			return errors.New("no nats-connection-reconnected line yet")
		}
		return nil
	})
	select {
	case <-c.Reconnected():
	case <-time.After(waitLong):
		t.Fatal("no value on Reconnected()")
	}
	if !c.Connected() {
		t.Fatal("Connected() = false after reconnect")
	}

	pub := connect(t, second, ClientConfig{})
	// The resubscription travels on another connection than the publish, so
	// keep publishing until the server has applied it.
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if err := pub.Publish(SubjectRegister, []byte("after-reconnect")); err != nil {
			return err
		}
		if err := pub.Flush(); err != nil {
			return err
		}
		select {
		case m := <-got:
			if string(m.Data) != "after-reconnect" {
				return fmt.Errorf("got %q", m.Data)
			}
			return nil
		case <-time.After(20 * time.Millisecond):
			return errors.New("subscription got nothing after the reconnect")
		}
	})
	if strings.Contains(buf.String(), testPassword) {
		t.Fatalf("client log shows the password:\n%s", buf)
	}
}

func TestClientStillDisconnected(t *testing.T) {
	t.Parallel()
	s := startServer(t, 0)
	log, buf := newTestLogger()
	c := connect(t, s, ClientConfig{Logger: log, PingInterval: 50 * time.Millisecond, ReconnectWait: 20 * time.Millisecond})

	s.Stop()
	testutil.CheckFor(t, waitLong, 10*time.Millisecond, func() error {
		if n := buf.count("nats-connection-still-disconnected"); n == 0 {
			return errors.New("no nats-connection-still-disconnected line yet")
		}
		return nil
	})
	if c.tickersAlive.Load() != 1 {
		t.Fatalf("%d still-disconnected tickers, want 1", c.tickersAlive.Load())
	}

	c.Close()
	if n := c.tickersAlive.Load(); n != 0 {
		t.Fatalf("%d still-disconnected tickers after Close, want 0", n)
	}
	if buf.count("nats-connection-closed") != 1 {
		t.Fatalf("no nats-connection-closed line after Close:\n%s", buf)
	}
	c.Close() // again: a no-op
	if strings.Contains(buf.String(), testPassword) {
		t.Fatalf("client log shows the password:\n%s", buf)
	}
}

func TestConnectFailure(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	const urlPassword, optPassword = "url-secret-pw", "option-secret-pw"
	for _, tc := range []struct {
		name     string
		cfg      ClientConfig
		wantText []string
	}{
		{
			name:     "default attempts",
			cfg:      ClientConfig{URLs: []string{"nats://" + addr}, User: "u", Password: optPassword},
			wantText: []string{"cannot connect to NATS at nats://" + addr + " after 3 attempts: "},
		},
		{
			name:     "credentials in URL",
			cfg:      ClientConfig{URLs: []string{"nats://u:" + urlPassword + "@" + addr}, ConnectAttempts: 1},
			wantText: []string{"nats://u:xxxxx@" + addr, "after 1 attempt: "},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = discardLogger()
			c, err := Connect(tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Connect to a closed port succeeded")
			}
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, p := range []string{urlPassword, optPassword} {
				if strings.Contains(err.Error(), p) {
					t.Errorf("error shows a password: %q", err)
				}
			}
		})
	}
}

func TestConnectRejectsBadURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		urls []string
		want string
	}{
		{"none", nil, "no NATS server URL"},
		{"http", []string{"http://127.0.0.1:4222"}, "must start with nats://"},
		{"no scheme", []string{"127.0.0.1:4222"}, "not a valid URL"},
		{"garbage with password", []string{"nats://u:hunter22@[::1"}, "nats://xxxxx@[::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Connect(ClientConfig{URLs: tc.urls, Logger: discardLogger()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Connect(%q) = %v, want an error containing %q", tc.urls, err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter22") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}
