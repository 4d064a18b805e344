// Command goapp is the app the rep tests stage: a tiny Go app (go.mod and
// main.go) that the builder compiles into the droplet.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	fmt.Println("goapp listening on", os.Getenv("PORT"))
	http.ListenAndServe(":"+os.Getenv("PORT"), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello from goapp")
	}))
}
