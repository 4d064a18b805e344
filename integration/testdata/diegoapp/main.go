// Command diegoapp is the app the Diego integration tests push: it listens
// on $PORT, answers with its instance guid and index, and exits on /crash.
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	guid, index := os.Getenv("CF_INSTANCE_GUID"), os.Getenv("CF_INSTANCE_INDEX")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "instance %s index %s\n", guid, index)
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "crashing")
		w.(http.Flusher).Flush()
		go func() { time.Sleep(10 * time.Millisecond); os.Exit(3) }()
	})
	srv := &http.Server{Addr: ":" + os.Getenv("PORT"), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Println("diegoapp listening on", srv.Addr)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
