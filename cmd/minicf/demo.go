package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/demo"
	"github.com/minicf/minicf/internal/foundation"
	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/trace"
)

func upCommand() *cobra.Command {
	var o foundationFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole foundation in one process: NATS, BBS, Cloud Controller, auctioneer, cells, route emitters, router",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			f, err := foundation.New(cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if err := f.Start(ctx, func(s string) { out.Write([]byte("==> " + s + "\n")) }); err != nil {
				return err
			}
			demo.PrintInfo(out, f.Info())
			out.Write([]byte("==> ready: minicf push APP -p DIR pushes an app; Ctrl-C stops the foundation\n"))
			<-ctx.Done()
			out.Write([]byte("==> stopping\n"))
			return f.Stop(context.Background())
		},
	}
	o.register(cmd)
	return cmd
}

func demoCommand() *cobra.Command {
	var o foundationFlags
	var app string
	var exit bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the foundation, push the example app with two instances and a route, and curl it through the router",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, demo.Options{Foundation: cfg, AppDir: app, Out: cmd.OutOrStdout(), Exit: exit})
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&app, "app", "", "the app to push (default: examples/hello)")
	cmd.Flags().BoolVar(&exit, "exit", false, "stop after the curls instead of running until Ctrl-C")
	return cmd
}

// foundationFlags are the flags up and demo share.
type foundationFlags struct {
	home, mode, networkRange, domain, level, prefix string
	cells                                           int
	routeIntegrity                                  bool
	cfg                                             foundation.Config
}

func (o *foundationFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.home, "home", "", "state directory (default $MINICF_HOME or ~/.minicf)")
	f.StringVar(&o.mode, "mode", "auto", "namespace, process or auto (namespace where root, Linux, ip and iptables are available)")
	f.StringVar(&o.networkRange, "network-range", "10.244.0.0/16", "the foundation's /16 in namespace mode")
	f.StringVar(&o.domain, "domain", "apps.localhost", "the shared app domain")
	f.IntVar(&o.cells, "cells", 2, "number of cells")
	f.BoolVar(&o.routeIntegrity, "route-integrity", true, "run the envoy sidecar and register TLS routes checked against the instance identity")
	f.StringVar(&o.cfg.RouterListen, "router", "127.0.0.1:8081", "router address")
	f.StringVar(&o.cfg.CCListen, "api", "127.0.0.1:9022", "Cloud Controller address")
	f.StringVar(&o.cfg.NATSListen, "nats", "127.0.0.1:4222", "NATS address")
	f.StringVar(&o.cfg.TraceListen, "trace", trace.DefaultListen, "trace API address (minicf trace, the flow page), or off")
	f.StringVar(&o.level, "log-level", "warn", "component log level on stderr: debug, info, warn or error")
	// For running several foundations on one host (tests): the other
	// listeners and the namespace-mode name prefix.
	f.StringVar(&o.cfg.RouterStatus, "router-status", "127.0.0.1:8082", "router status address (/health, /routes, /metrics)")
	f.StringVar(&o.cfg.BBSListen, "bbs-listen", "127.0.0.1:8889", "BBS address")
	f.StringVar(&o.cfg.AuctioneerListen, "auctioneer-listen", "127.0.0.1:9016", "auctioneer address")
	f.StringVar(&o.cfg.CCInternalListen, "api-internal", "127.0.0.1:9023", "Cloud Controller internal API address (cells, mutual TLS)")
	f.StringVar(&o.prefix, "prefix", "mcf", "name prefix of namespaces, links and cgroups (namespace mode)")
	for _, name := range []string{"router-status", "bbs-listen", "auctioneer-listen", "api-internal", "prefix"} {
		f.MarkHidden(name)
	}
}

func (o *foundationFlags) config() (foundation.Config, error) {
	logger, err := logging.New(os.Stderr, o.level, "minicf")
	if err != nil {
		return foundation.Config{}, err
	}
	if o.cells < 1 || o.cells > 244 {
		// Cell N takes address .0.(10+N) and the /24 .N.0 of the range.
		return foundation.Config{}, fmt.Errorf("--cells %d: a foundation has 1 to 244 cells", o.cells)
	}
	c := o.cfg
	c.Home = o.home
	if c.Home == "" {
		c.Home = minicfHome()
	}
	c.Mode, c.NetworkRange, c.Domain, c.Cells, c.Prefix = o.mode, o.networkRange, o.domain, o.cells, o.prefix
	ri := o.routeIntegrity
	c.RouteIntegrity = &ri
	c.Logger = logger
	return c, nil
}
