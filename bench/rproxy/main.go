// Command rproxy is the calibration point of bench/router.sh: Go's bare
// httputil.ReverseProxy to one fixed backend, with keep-alive, no access log
// and no metrics. The gorouter reference measured it at 0.19 of direct on
// two shared cores; running it in the same run as minicf's router shows
// where the router stands without trusting numbers from another machine.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	backend := flag.String("backend", "", "backend URL, e.g. http://127.0.0.1:9000")
	flag.Parse()
	u, err := url.Parse(*backend)
	if err != nil || u.Host == "" {
		log.Fatalf("rproxy: -backend %q is not a URL with a host", *backend)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: 90 * time.Second}
	rp.ErrorLog = log.New(os.Stderr, "rproxy: ", 0)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("rproxy: %v", err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Close()
}
