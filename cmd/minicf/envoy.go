package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/envoy"
	"github.com/minicf/minicf/internal/logging"
)

func envoyCommand() *cobra.Command {
	var listens []string
	var cert, key, clientCA, admin, level string
	var drain, connect time.Duration
	cmd := &cobra.Command{
		Use:   "envoy",
		Short: "Run the envoy sidecar: TLS with the instance identity in front of the app's ports",
		Long: `Run minicf's envoy sidecar, the process the rep starts beside the app in each
container. Each listener terminates TLS with the instance identity certificate
(CN and DNS SAN = instance guid) and proxies every connection, at L4, to an
app address. The certificate and key are re-read when their files change.

Listeners are given with --listen, once per listener:

  --listen [NAME=]LISTEN_ADDR=APP_ADDR

NAME defaults to Diego's listener-<app port>-<listen port>. For example, the
listeners Diego makes for app port 8080:

  minicf envoy --listen 0.0.0.0:61001=127.0.0.1:8080 \
    --listen 0.0.0.0:61443=127.0.0.1:8080 \
    --cert /etc/cf-instance-credentials/instance.crt \
    --key /etc/cf-instance-credentials/instance.key --admin 127.0.0.1:61003

Once every listener is bound it prints one line to stdout:

  envoy listening on ADDR[,ADDR...] [admin ADDR]

with the bound addresses in --listen order (port 0 picks one). SIGTERM or
SIGINT stops accepting, waits up to --drain-timeout for open connections,
closes the rest and exits 0; a second signal cuts the wait short.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Catch the signals first: a SIGTERM during start-up must still end in exit 0.
			sig := make(chan os.Signal, 2)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sig)

			logger, err := logging.New(os.Stderr, level, "envoy")
			if err != nil {
				return err
			}
			if len(listens) == 0 {
				return fmt.Errorf("--listen: at least one [NAME=]LISTEN_ADDR=APP_ADDR is needed")
			}
			cfg := envoy.Config{
				CertFile: cert, KeyFile: key, ClientCAFile: clientCA, AdminListen: admin,
				ConnectTimeout: connect, DrainTimeout: drain, Logger: logger,
			}
			for _, l := range listens {
				parsed, err := parseEnvoyListen(l)
				if err != nil {
					return err
				}
				cfg.Listeners = append(cfg.Listeners, parsed)
			}
			p, err := envoy.New(cfg)
			if err != nil {
				return err
			}
			if err := p.Start(); err != nil {
				return err
			}
			line := "envoy listening on " + strings.Join(p.Addrs(), ",")
			if a := p.AdminAddr(); a != "" {
				line += " admin " + a
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)

			s := <-sig
			logger.Info("envoy-signal", "signal", s.String())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case s := <-sig:
					logger.Info("envoy-signal", "signal", s.String(), "effect", "drain cut short")
					cancel()
				case <-ctx.Done():
				}
			}()
			if err := p.Stop(ctx); err != nil {
				logger.Warn("envoy-drain-cut-short", "error", err.Error())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&listens, "listen", nil, "listener as [NAME=]LISTEN_ADDR=APP_ADDR, e.g. 0.0.0.0:61001=127.0.0.1:8080 (repeatable)")
	f.StringVar(&cert, "cert", "", "PEM instance identity chain (leaf, then CA); re-read when it changes")
	f.StringVar(&key, "key", "", "PEM key of --cert; re-read when it changes")
	f.StringVar(&clientCA, "client-ca", "", "PEM CA(s) client certificates must chain to (default: no client certificate asked)")
	f.StringVar(&admin, "admin", "", "address of the admin interface, e.g. 127.0.0.1:61003 (default: none)")
	f.DurationVar(&drain, "drain-timeout", envoy.DefaultDrainTimeout, "how long a stop waits for open connections")
	f.DurationVar(&connect, "connect-timeout", envoy.DefaultConnectTimeout, "timeout of the connection to the app")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// parseEnvoyListen reads [NAME=]LISTEN_ADDR=APP_ADDR.
func parseEnvoyListen(s string) (envoy.Listener, error) {
	parts := strings.Split(s, "=")
	switch len(parts) {
	case 2:
		return envoy.Listener{Listen: parts[0], AppAddr: parts[1]}, nil
	case 3:
		if parts[0] == "" {
			return envoy.Listener{}, fmt.Errorf("--listen %q: the name before the first = is empty", s)
		}
		return envoy.Listener{Name: parts[0], Listen: parts[1], AppAddr: parts[2]}, nil
	default:
		return envoy.Listener{}, fmt.Errorf("--listen %q is not [NAME=]LISTEN_ADDR=APP_ADDR", s)
	}
}
