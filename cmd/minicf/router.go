package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/router"
)

func routerCommand() *cobra.Command {
	var natsURL, listen, status, config, backendCA string
	cmd := &cobra.Command{
		Use:   "router",
		Short: "Run the router (GoRouter): routes from NATS, requests to app instances",
		Long: `Run the router, minicf's GoRouter. It learns routes from router.register and
router.unregister on NATS and proxies each request to an endpoint of its route.
Without --nats it starts an embedded NATS server (nats.embedded_listen in the config).
Everything else is set in the YAML file given with --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := router.LoadFileConfig(config)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("listen") {
				cfg.Listen = listen
			}
			if f.Changed("status") {
				cfg.Status.Listen = status
			}
			if f.Changed("nats") {
				cfg.NATS.URLs = strings.Split(natsURL, ",")
			}
			if f.Changed("backend-ca") {
				cfg.Backends.CAFile = backendCA
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			return runRouter(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&natsURL, "nats", "", "NATS URL(s), comma-separated (default: start an embedded server)")
	f.StringVar(&listen, "listen", "127.0.0.1:8081", "address for proxied requests")
	f.StringVar(&status, "status", "127.0.0.1:8082", "address of /health, /routes and /metrics")
	f.StringVar(&config, "config", "", "YAML config file")
	f.StringVar(&backendCA, "backend-ca", "", "PEM CA that TLS backends' certificates must chain to")
	return cmd
}

func runRouter(ctx context.Context, cfg router.FileConfig, stdout io.Writer) error {
	logger, err := logging.New(os.Stderr, cfg.Logging.Level, "router")
	if err != nil {
		return err
	}
	urls := cfg.NATS.URLs
	if len(urls) == 0 {
		host, port, err := splitHostPort(cfg.NATS.EmbeddedListen)
		if err != nil {
			return fmt.Errorf("nats.embedded_listen: %w", err)
		}
		srv, err := mbus.NewServer(mbus.ServerConfig{Host: host, Port: port, User: cfg.NATS.User, Password: cfg.NATS.Password, Logger: logger})
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return err
		}
		defer srv.Stop()
		urls = []string{srv.URL()}
		fmt.Fprintf(stdout, "embedded nats listening on %s\n", srv.URL())
	}
	bus, err := mbus.Connect(mbus.ClientConfig{URLs: urls, User: cfg.NATS.User, Password: cfg.NATS.Password, Name: "minicf-router", Logger: logger})
	if err != nil {
		return err
	}
	defer bus.Close()

	backendTLS, err := cfg.BackendTLS()
	if err != nil {
		return err
	}
	var accessLog io.Writer
	switch cfg.AccessLog.File {
	case "":
	case "stdout", "-":
		accessLog = stdout
	default:
		f, err := os.OpenFile(cfg.AccessLog.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("cannot open the access log: %w", err)
		}
		defer f.Close()
		accessLog = f
	}
	var appLogs router.AppLogPublisher
	if cfg.AccessLog.PublishAppLogs {
		appLogs = func(app string, batch []byte) {
			bus.Publish(mbus.SubjectAppLogsPrefix+app, batch)
		}
	}
	r, err := router.New(bus, router.Options{
		Config: cfg, BackendTLS: backendTLS, AccessLog: accessLog, AppLogs: appLogs,
		Dropped: bus.Dropped, Logger: logger,
	})
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer r.Stop(context.Background())
	fmt.Fprintf(stdout, "router listening on %s, status on %s\n", r.Addr(), r.StatusAddr())

	select {
	case err := <-r.Errors():
		return err
	case s := <-sig:
		// SIGUSR1 is the graceful drain a load balancer needs; SIGTERM and
		// SIGINT skip the drain wait. Later signals change nothing.
		wait := cfg.DrainWait
		if s != syscall.SIGUSR1 {
			wait = 0
		}
		logger.Info("router-signal", "signal", s.String())
		dctx, cancel := context.WithTimeout(context.Background(), wait+cfg.DrainTimeout)
		defer cancel()
		go func() {
			for range sig {
			}
		}()
		if err := r.Drain(dctx, wait); err != nil {
			return fmt.Errorf("drain ended with requests still in flight: %w", err)
		}
		return nil
	}
}
