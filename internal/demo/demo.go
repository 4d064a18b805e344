// Package demo runs the shortest path of route propagation that minicf has
// today, end to end and for real: an embedded NATS server, the router, an
// example app, a router.register published on the bus exactly as Diego's
// route emitter would, and a request through the router. As more of the
// foundation lands (Cloud Controller, BBS, cells), the demo grows into
// "push an app and curl it".
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/router"
)

// Options configure a demo run.
type Options struct {
	Route  string        // the route to register, e.g. myapp.apps.localhost
	Out    io.Writer     // progress for a person
	Logger *slog.Logger  // component logs
	Hold   time.Duration // keep everything up this long after the curl (0: stop at once)
}

// Run starts the parts, propagates the route, curls it and stops everything.
func Run(ctx context.Context, o Options) error {
	step := func(format string, args ...any) { fmt.Fprintf(o.Out, "==> "+format+"\n", args...) }

	step("starting NATS (embedded nats-server on loopback)")
	nats, err := mbus.NewServer(mbus.ServerConfig{Host: "127.0.0.1", User: "nats", Password: "nats", Logger: o.Logger})
	if err != nil {
		return err
	}
	if err := nats.Start(); err != nil {
		return err
	}
	defer nats.Stop()
	step("NATS ready at %s", nats.URL())

	routerBus, err := mbus.Connect(mbus.ClientConfig{URLs: []string{nats.URL()}, User: "nats", Password: "nats", Name: "demo-router", Logger: o.Logger})
	if err != nil {
		return err
	}
	defer routerBus.Close()
	cfg := router.DefaultFileConfig()
	cfg.Listen, cfg.Status.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.StartResponseDelay = 0
	r, err := router.New(routerBus, router.Options{Config: cfg, Logger: o.Logger, Dropped: routerBus.Dropped})
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer r.Stop(context.Background())
	step("router (GoRouter twin) listening on %s, status on %s", r.Addr(), r.StatusAddr())

	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	instance := uuid.NewString()
	app := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "Hello from the example app, instance %s (request %s)\n", instance, req.Header.Get("X-Vcap-Request-Id"))
	})}
	go app.Serve(appLn)
	defer app.Close()
	appHost, appPortS, _ := net.SplitHostPort(appLn.Addr().String())
	appPort, _ := strconv.Atoi(appPortS)
	step("example app instance %s listening on %s", instance, appLn.Addr())

	emitter, err := mbus.Connect(mbus.ClientConfig{URLs: []string{nats.URL()}, User: "nats", Password: "nats", Name: "demo-emitter", Logger: o.Logger})
	if err != nil {
		return err
	}
	defer emitter.Close()
	msg := mbus.RegistryMessage{
		Host: appHost, Port: uint16(appPort), URIs: []string{o.Route}, App: uuid.NewString(),
		PrivateInstanceID: instance, PrivateInstanceIndex: "0", EndpointUpdatedAtNs: time.Now().UnixNano(),
		Tags: map[string]string{"component": "route-emitter"},
	}
	body, _ := json.Marshal(msg)
	published := time.Now()
	if err := emitter.Publish(mbus.SubjectRegister, body); err != nil {
		return err
	}
	if err := emitter.Flush(); err != nil {
		return err
	}
	step("published router.register on NATS: %s", body)

	client := &http.Client{Timeout: 5 * time.Second}
	var resp *http.Response
	var got []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+r.Addr()+"/", nil)
		req.Host = o.Route
		resp, err = client.Do(req)
		if err == nil {
			got, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("router answered %d %s", resp.StatusCode, resp.Header.Get("X-Cf-Routererror"))
			}
			return fmt.Errorf("the route did not become reachable within 5s: %w", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	step("route reachable %.1f ms after the register was published", float64(time.Since(published).Microseconds())/1000)
	step("curl -H 'Host: %s' http://%s/ -> %d\n%s", o.Route, r.Addr(), resp.StatusCode, got)
	routes, _ := json.MarshalIndent(r.RoutesSnapshot()[o.Route], "    ", "  ")
	step("the router's table entry for %s (GET http://%s/routes):\n    %s", o.Route, r.StatusAddr(), routes)
	if port := r.Addr()[len("127.0.0.1:"):]; port != "" {
		step("with a browser or curl: curl http://%s:%s/ (*.localhost resolves to loopback)", o.Route, port)
	}
	if o.Hold > 0 {
		step("holding everything up for %s (Ctrl-C to stop)", o.Hold)
		select {
		case <-ctx.Done():
		case <-time.After(o.Hold):
		}
	}
	step("stopping")
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
