package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/routeemitter"
)

// routeEmitterStartTimeout bounds the wait for the first sync with the BBS.
const routeEmitterStartTimeout = time.Minute

func routeEmitterCommand() *cobra.Command {
	var bbsURL, natsURL, cellID, home, level, metricsAddr string
	var syncInterval time.Duration
	cmd := &cobra.Command{
		Use:   "route-emitter",
		Short: "Run the route emitter (Diego's): BBS events to router.register and router.unregister on NATS",
		Long: `Run the route emitter, minicf's Diego route-emitter. It watches the BBS's LRP
events, joins running instances with their DesiredLRP's cf-router routes, and
publishes router.register / router.unregister on NATS. It greets the routers to
learn their register interval, re-registers every route at that interval, and
resyncs with the BBS every --sync-interval.

With --cell-id it runs in local mode, as on a Diego cell: only that cell's
instances. Without it, global mode: every cell's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(os.Stderr, level, "route-emitter")
			if err != nil {
				return err
			}
			if cellID != "" {
				logger = logger.With("cell_id", cellID)
			}
			if home == "" {
				home = minicfHome()
			}
			ca, err := foundationCA(home)
			if err != nil {
				return err
			}
			name := "route-emitter"
			if cellID != "" {
				name += "-" + cellID
			}
			_, clientTLS, err := componentTLS(ca, name, "")
			if err != nil {
				return err
			}
			bus, err := mbus.Connect(mbus.ClientConfig{URLs: strings.Split(natsURL, ","), Name: "minicf-" + name, Logger: logger})
			if err != nil {
				return err
			}
			defer bus.Close()

			em, err := routeemitter.New(routeemitter.Config{
				CellID: cellID, Bus: bus, BBS: bbs.NewClient(bbsURL, clientTLS),
				SyncInterval: syncInterval, Logger: logger,
			})
			if err != nil {
				return err
			}
			var metricsSrv *http.Server
			if metricsAddr != "" {
				ln, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					return fmt.Errorf("--metrics: %w", err)
				}
				mux := http.NewServeMux()
				mux.Handle("GET /metrics", promhttp.HandlerFor(em.Metrics(), promhttp.HandlerOpts{}))
				metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() {
					if err := metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
						logger.Error("metrics-serve-failed", "error", err.Error())
					}
				}()
				defer metricsSrv.Close()
				logger.Info("metrics-listening", "address", ln.Addr().String())
			}

			// One reader of the signals for the whole run: a signal during
			// start-up ends the start, one after it stops the emitter.
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sig)
			startCtx, cancel := context.WithTimeout(cmd.Context(), routeEmitterStartTimeout)
			defer cancel()
			got := make(chan os.Signal, 1)
			go func() {
				s := <-sig
				got <- s
				cancel()
			}()
			if err := em.Start(startCtx); err != nil {
				return err
			}
			mode := "global"
			if cellID != "" {
				mode = "local, cell " + cellID
			}
			fmt.Fprintf(cmd.OutOrStdout(), "route-emitter started (%s mode), BBS %s\n", mode, bbsURL)

			s := <-got
			logger.Info("route-emitter-stopping", "signal", s.String())
			ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
			defer stop()
			return em.Stop(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bbsURL, "bbs", "https://127.0.0.1:8889", "BBS URL (mutual TLS with a certificate from the foundation CA)")
	f.StringVar(&natsURL, "nats", "nats://nats:nats@127.0.0.1:4222", "NATS URL(s), comma-separated, credentials included")
	f.StringVar(&cellID, "cell-id", "", "run in local mode for this cell (empty: global mode, every cell)")
	f.StringVar(&home, "home", "", "state directory with the foundation CA (default $MINICF_HOME or ~/.minicf)")
	f.DurationVar(&syncInterval, "sync-interval", routeemitter.DefaultSyncInterval, "how often the table is rebuilt from the BBS")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&metricsAddr, "metrics", "", "address for Prometheus /metrics, e.g. 127.0.0.1:9105 (default: none)")
	return cmd
}
