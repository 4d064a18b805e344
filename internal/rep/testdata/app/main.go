// Command app is the rep tests' app: an HTTP server on $PORT that answers
// with its instance guid, index and pid, shows its environment on /env and
// exits with status 3 on /crash. On SIGTERM it says so and exits 0, unless
// IGNORE_TERM is set.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		go func() {
			<-c
			fmt.Println("app received SIGTERM")
			os.Exit(0)
		}()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s %s %d", os.Getenv("CF_INSTANCE_GUID"), os.Getenv("INSTANCE_INDEX"), os.Getpid())
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, _ *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		wd, _ := os.Getwd()
		env["_CWD"] = wd
		json.NewEncoder(w).Encode(env)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		status, _ := strconv.Atoi(os.Getenv("HEALTH_STATUS"))
		if status == 0 {
			status = 200
		}
		w.WriteHeader(status)
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Println("crashing on purpose")
		fmt.Fprintln(w, "bye")
		go func() {
			time.Sleep(10 * time.Millisecond)
			os.Exit(3)
		}()
	})
	fmt.Println("listening on", os.Getenv("PORT"))
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
