package harness

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/minicf/minicf/internal/testutil"
)

// RegistryMessage is gorouter's router.register / router.unregister JSON,
// written out here so the tests check the wire format, not a shared type.
type RegistryMessage struct {
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

// Bus is the test's own NATS client: it plays the route emitter.
type Bus struct {
	Conn *nats.Conn
	t    testing.TB
}

// ConnectBus connects to the NATS at url as user nats, named after the
// suite, reconnecting for ever; the connection closes when the test ends.
func (s *Suite) ConnectBus(t testing.TB, url string) *Bus {
	t.Helper()
	var nc *nats.Conn
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var err error
		nc, err = nats.Connect(url, nats.UserInfo("nats", "nats"), nats.Name(s.Name+"-test"),
			nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0),
			nats.Timeout(time.Second))
		return err
	})
	t.Cleanup(nc.Close)
	return &Bus{Conn: nc, t: t}
}

// Publish publishes data on subject and flushes.
func (b *Bus) Publish(subject string, data []byte) error {
	if err := b.Conn.Publish(subject, data); err != nil {
		return err
	}
	return b.Conn.Flush()
}

// MustPublish is Publish failing the test on an error.
func (b *Bus) MustPublish(subject string, data []byte) {
	b.t.Helper()
	if err := b.Publish(subject, data); err != nil {
		b.t.Fatalf("publish on %s: %v", subject, err)
	}
}

// Register publishes m on router.register, failing the test on an error.
func (b *Bus) Register(m RegistryMessage) {
	b.t.Helper()
	b.MustPublish("router.register", MustJSON(b.t, m))
}

// Unregister publishes m on router.unregister, failing the test on an error.
func (b *Bus) Unregister(m RegistryMessage) {
	b.t.Helper()
	b.MustPublish("router.unregister", MustJSON(b.t, m))
}

// Heartbeat re-sends m every interval, as a route emitter does, until stop
// is called or the test ends. Publishing while the bus is down is buffered
// by nats.go and sent on reconnect.
func (b *Bus) Heartbeat(m RegistryMessage, every time.Duration) (stop func()) {
	data := MustJSON(b.t, m)
	quit := make(chan struct{})
	done := make(chan struct{})
	ctx := b.t.Context()
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case <-tick.C:
				b.Conn.Publish("router.register", data)
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() { close(quit) })
		<-done
	}
	// t.Context is cancelled before cleanups run, so this does not block.
	b.t.Cleanup(stop)
	return stop
}

// MustJSON marshals v, failing the test on an error.
func MustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BusRecorder keeps what a Bus sees on router.register and
// router.unregister.
type BusRecorder struct {
	mu   sync.Mutex
	msgs []recorded
}

type recorded struct {
	at      time.Time
	subject string
	m       RegistryMessage
}

// RecordBus subscribes b to router.register and router.unregister and
// records every message that parses, until the test ends.
func RecordBus(t testing.TB, b *Bus) *BusRecorder {
	t.Helper()
	rec := &BusRecorder{}
	for _, subj := range []string{"router.register", "router.unregister"} {
		sub, err := b.Conn.Subscribe(subj, func(msg *nats.Msg) {
			var m RegistryMessage
			if json.Unmarshal(msg.Data, &m) != nil {
				return
			}
			rec.mu.Lock()
			rec.msgs = append(rec.msgs, recorded{at: time.Now(), subject: msg.Subject, m: m})
			rec.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
	}
	if err := b.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	return rec
}

// FirstRegister is when the first router.register of uri alone arrived.
func (r *BusRecorder) FirstRegister(uri string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.msgs {
		if x.subject == "router.register" && len(x.m.URIs) == 1 && x.m.URIs[0] == uri {
			return x.at, true
		}
	}
	return time.Time{}, false
}

// Since returns the messages on subject that arrived at or after at.
func (r *BusRecorder) Since(at time.Time, subject string) []RegistryMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []RegistryMessage
	for _, x := range r.msgs {
		if !x.at.Before(at) && x.subject == subject {
			out = append(out, x.m)
		}
	}
	return out
}
