// Command register100k publishes many gorouter router.register messages on
// NATS as fast as it can (one message per route), flushes, and prints how
// long publishing took. bench/routes100k.sh uses it for 100,000 routes and
// bench/router.sh for its dummy routes and its TLS route.
//
// Route i (0-based) is -uri-fmt formatted with i+-first (or -uri-fmt as is
// when it has no verb), at -host:(-port + i*-port-step), with -tls-port and
// -san when given.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

type registryMessage struct {
	Host                 string   `json:"host"`
	Port                 uint16   `json:"port"`
	TLSPort              uint16   `json:"tls_port,omitempty"`
	URIs                 []string `json:"uris"`
	App                  string   `json:"app,omitempty"`
	PrivateInstanceID    string   `json:"private_instance_id,omitempty"`
	PrivateInstanceIndex string   `json:"private_instance_index,omitempty"`
	ServerCertDomainSAN  string   `json:"server_cert_domain_san,omitempty"`
}

func main() {
	natsURL := flag.String("nats", nats.DefaultURL, "NATS URL")
	n := flag.Int("n", 100000, "number of routes")
	first := flag.Int("first", 0, "index of the first route")
	uriFmt := flag.String("uri-fmt", "r%d.apps.localhost", "route host; %d is the route index")
	host := flag.String("host", "127.0.0.1", `backend host; "spread" gives route i its own 10.x.y.z (a cell IP per route)`)
	port := flag.Int("port", 20000, "backend port of the first route")
	portStep := flag.Int("port-step", 1, "port increment per route (wraps into 1024..65535)")
	tlsPort := flag.Int("tls-port", 0, "tls_port for every route (0: none)")
	san := flag.String("san", "", "server_cert_domain_san")
	app := flag.String("app", "bench-app", "app GUID prefix")
	interval := flag.Duration("interval", 0, "re-publish interval; 0 publishes once and exits")
	flag.Parse()
	if *n < 1 {
		log.Fatalf("-n must be >= 1")
	}

	msgs := make([][]byte, *n)
	for i := 0; i < *n; i++ {
		idx := *first + i
		uri := *uriFmt
		if strings.Contains(uri, "%") {
			uri = fmt.Sprintf(uri, idx)
		}
		p := *port + i**portStep
		if p > 65535 {
			p = 1024 + (p-1024)%(65536-1024)
		}
		h := *host
		if h == "spread" {
			h = fmt.Sprintf("10.%d.%d.%d", (idx>>16)&255, (idx>>8)&255, idx&255)
		}
		m := registryMessage{
			Host: h, Port: uint16(p), TLSPort: uint16(*tlsPort), URIs: []string{uri},
			App: fmt.Sprintf("%s-%d", *app, idx), PrivateInstanceID: fmt.Sprintf("inst-%d", idx),
			PrivateInstanceIndex: "0", ServerCertDomainSAN: *san,
		}
		b, err := json.Marshal(m)
		if err != nil {
			log.Fatal(err)
		}
		msgs[i] = b
	}

	nc, err := nats.Connect(*natsURL, nats.Name("minicf-bench-register100k"),
		nats.Timeout(5*time.Second), nats.MaxReconnects(-1), nats.ReconnectBufSize(64<<20))
	if err != nil {
		log.Fatalf("connect: %v", err)
	}
	defer nc.Close()

	publish := func() (time.Duration, error) {
		t0 := time.Now()
		for _, b := range msgs {
			if err := nc.Publish("router.register", b); err != nil {
				return 0, err
			}
		}
		if err := nc.FlushTimeout(60 * time.Second); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	d, err := publish()
	if err != nil {
		log.Fatalf("publish: %v", err)
	}
	fmt.Printf("published %d router.register messages in %.3fs (%.0f msg/s)\n", *n, d.Seconds(), float64(*n)/d.Seconds())
	_ = os.Stdout.Sync()
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
			if _, err := publish(); err != nil {
				log.Printf("publish: %v", err)
			}
		case <-sigs:
			return
		}
	}
}
