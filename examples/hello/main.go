// Command hello is minicf's example app: `minicf demo` pushes it with two
// instances and a route, and curls it through the router. It answers every
// request with JSON saying which app, which instance and which addresses
// served it, so you can see the router spread requests over instances.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"time"
)

type answer struct {
	App           string `json:"app"`
	InstanceIndex string `json:"instance_index"`
	InstanceGUID  string `json:"instance_guid"`
	CellIP        string `json:"cell_ip"`         // CF_INSTANCE_IP: the cell's address
	InstanceIP    string `json:"instance_ip"`     // CF_INSTANCE_INTERNAL_IP: the container's own
	Port          string `json:"port"`            // where the app listens inside its container
	RequestID     string `json:"request_id"`      // X-Vcap-Request-Id, set by the router
	ForwardedFor  string `json:"x_forwarded_for"` // the client, as the router saw it
	ServedAt      string `json:"served_at"`
}

func main() {
	var vcap struct {
		ApplicationName string `json:"application_name"`
	}
	json.Unmarshal([]byte(os.Getenv("VCAP_APPLICATION")), &vcap)
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(answer{
			App:           vcap.ApplicationName,
			InstanceIndex: os.Getenv("CF_INSTANCE_INDEX"),
			InstanceGUID:  os.Getenv("CF_INSTANCE_GUID"),
			CellIP:        os.Getenv("CF_INSTANCE_IP"),
			InstanceIP:    os.Getenv("CF_INSTANCE_INTERNAL_IP"),
			Port:          port,
			RequestID:     r.Header.Get("X-Vcap-Request-Id"),
			ForwardedFor:  r.Header.Get("X-Forwarded-For"),
			ServedAt:      time.Now().UTC().Format(time.RFC3339Nano),
		})
	})
	log.Printf("hello (%s, instance %s) listening on :%s", vcap.ApplicationName, os.Getenv("CF_INSTANCE_INDEX"), port)
	srv := &http.Server{Addr: ":" + port, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
