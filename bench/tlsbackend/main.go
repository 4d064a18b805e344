// Command tlsbackend is bench/backend with TLS: the same fixed 19-byte 200
// response, served in plain HTTP on -listen (for the direct wrk runs) and
// with TLS on -tls-listen using -cert/-key (for the router's TLS route).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

var body = []byte("hello from backend\n")

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "plain HTTP address")
	tlsListen := flag.String("tls-listen", "127.0.0.1:0", "TLS address")
	certFile := flag.String("cert", "", "certificate (PEM)")
	keyFile := flag.String("key", "", "key (PEM)")
	flag.Parse()
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("load cert: %v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	tln, err := net.Listen("tcp", *tlsListen)
	if err != nil {
		log.Fatal(err)
	}
	cl := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
		w.Header()["Content-Length"] = []string{cl}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	tsrv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	fmt.Printf("listening on %s\n", ln.Addr())
	fmt.Printf("tls listening on %s\n", tln.Addr())
	_ = os.Stdout.Sync()
	go func() {
		if err := tsrv.ServeTLS(tln, "", ""); err != nil && err != http.ErrServerClosed {
			log.Fatalf("serve tls: %v", err)
		}
	}()
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		<-sigs
		_ = tsrv.Close()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serve: %v", err)
	}
}
