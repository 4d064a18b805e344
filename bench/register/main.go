// Command register publishes a gorouter router.register message on NATS,
// either once (-interval 0) or repeatedly until killed.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// registryMessage mirrors the subset of gorouter's router.register payload
// that the bench needs.
type registryMessage struct {
	Host                 string   `json:"host"`
	Port                 uint16   `json:"port"`
	URIs                 []string `json:"uris"`
	App                  string   `json:"app,omitempty"`
	PrivateInstanceID    string   `json:"private_instance_id,omitempty"`
	PrivateInstanceIndex string   `json:"private_instance_index,omitempty"`
}

const subject = "router.register"

func main() {
	natsURL := flag.String("nats", nats.DefaultURL, "NATS URL, e.g. nats://user:pass@127.0.0.1:4222")
	host := flag.String("host", "127.0.0.1", "backend host")
	port := flag.Uint("port", 0, "backend port (required)")
	uri := flag.String("uri", "bench.apps.localhost", "route to register")
	app := flag.String("app", "bench-app", "app GUID/name")
	id := flag.String("id", "bench-1", "private instance id")
	index := flag.String("index", "0", "private instance index")
	interval := flag.Duration("interval", 0, "re-publish interval; 0 publishes once and exits")
	flag.Parse()

	if *port == 0 || *port > 65535 {
		log.Fatalf("-port must be in 1..65535, got %d", *port)
	}
	if *interval < 0 {
		log.Fatalf("-interval must be >= 0, got %s", *interval)
	}

	payload, err := json.Marshal(registryMessage{
		Host:                 *host,
		Port:                 uint16(*port),
		URIs:                 []string{*uri},
		App:                  *app,
		PrivateInstanceID:    *id,
		PrivateInstanceIndex: *index,
	})
	if err != nil {
		log.Fatalf("marshal: %v", err)
	}

	nc, err := nats.Connect(*natsURL,
		nats.Name("minicf-bench-register"),
		nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1),
	)
	if err != nil {
		log.Fatalf("connect %s: %v", redact(*natsURL), err)
	}
	defer nc.Close()

	publish := func() error {
		if err := nc.Publish(subject, payload); err != nil {
			return err
		}
		return nc.FlushTimeout(5 * time.Second)
	}

	if err := publish(); err != nil {
		nc.Close()
		log.Fatalf("publish %s: %v", subject, err)
	}
	if *interval == 0 {
		return
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			// Keep going across transient NATS outages; the client reconnects.
			if err := publish(); err != nil {
				log.Printf("publish %s: %v", subject, err)
			}
		case <-sigs:
			return
		}
	}
}

// redact hides the password in a NATS URL for error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
