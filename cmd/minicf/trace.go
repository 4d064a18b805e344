package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/cli"
	"github.com/minicf/minicf/internal/trace"
)

// traceCommand is `minicf trace ROUTE`: the route's journey through the
// foundation (internal/trace), read from the trace API that `minicf up`
// serves, then a request through the router and its path back.
func traceCommand() *cobra.Command {
	var follow, asJSON, noRequest bool
	var api, home string
	cmd := &cobra.Command{
		Use:   "trace ROUTE",
		Short: "Show how a route propagated: each component's step with its timing and artifact, then a request's path back",
		Long: `Show the journey of ROUTE (host.domain[/path]) through a running foundation, one line per
step of flow 1 (see docs/route-propagation.md): the component, the time since the first step
and since the previous one (ms), and the artifact (the DesiredLRP's routes, the DNAT rules,
the router.register message, the router's pool entry). Then it sends a request for the route
through the router and shows the request's path back: router, cell ip:port, DNAT, envoy, app,
with the X-Vcap-Request-Id.

The router and the trace API come from $MINICF_HOME/config.json, which ` + "`minicf up`" + ` writes.`,
		Example: `  minicf trace hello.apps.localhost
  minicf trace hello.apps.localhost --follow     # and then each new step as it happens
  minicf trace hello.apps.localhost --json       # the same for programs`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if home == "" {
				home = minicfHome()
			}
			router := ""
			cfg, cfgErr := cli.LoadConfig(home)
			if cfgErr == nil {
				router = cfg.Router
				if api == "" {
					api = cfg.Trace
				}
			}
			if api == "" {
				if cfgErr != nil {
					return fmt.Errorf("no trace API: %w (or give --trace URL)", cfgErr)
				}
				api = "http://" + trace.DefaultListen
			}
			if noRequest {
				router = ""
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			t, err := trace.Trace(tctx, trace.TraceOptions{Route: args[0], API: api, Router: router})
			cancel()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(t); err != nil {
					return err
				}
			} else {
				t.Render(out)
			}
			if !follow {
				return nil
			}
			var first, prev time.Time
			if n := len(t.Steps); n > 0 {
				first, prev = t.Steps[0].Time, t.Steps[n-1].Time
			}
			if !asJSON {
				fmt.Fprintf(out, "\nFollowing %s (Ctrl-C stops)...\n", t.Route)
			}
			enc := json.NewEncoder(out)
			err = (&trace.Client{URL: api}).Stream(ctx, trace.Query{Route: t.Route}, func(e trace.Event) error {
				if first.IsZero() {
					first, prev = e.Time, e.Time
				}
				s := trace.Step{Event: e, SinceNs: e.Time.Sub(first).Nanoseconds(), DeltaNs: e.Time.Sub(prev).Nanoseconds()}
				s.SinceMs, s.DeltaMs = float64(s.SinceNs)/1e6, float64(s.DeltaNs)/1e6
				prev = e.Time
				if asJSON {
					return enc.Encode(s)
				}
				trace.RenderStep(out, s)
				return nil
			})
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "after the journey so far, print each new step as it happens")
	f.BoolVar(&asJSON, "json", false, "print JSON: the timeline (and with --follow each new step, one per line)")
	f.BoolVar(&noRequest, "no-request", false, "do not send a request through the router")
	f.StringVar(&api, "trace", "", "trace API URL (default: config.json's trace, else http://127.0.0.1:8083)")
	f.StringVar(&home, "home", "", "state directory with config.json (default $MINICF_HOME or ~/.minicf)")
	return cmd
}
