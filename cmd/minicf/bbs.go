package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/auctioneer"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/rep"
)

func bbsCommand() *cobra.Command {
	var listen, db, auctioneerURL, home, level string
	var converge, cellTTL time.Duration
	cmd := &cobra.Command{
		Use:   "bbs",
		Short: "Run the BBS (Diego's Bulletin Board System): desired and actual LRPs, events, convergence",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(os.Stderr, level, "bbs")
			if err != nil {
				return err
			}
			if home == "" {
				home = minicfHome()
			}
			if db == "" {
				db = "sqlite://" + filepath.Join(home, "bbs.db")
			}
			ca, err := foundationCA(home)
			if err != nil {
				return err
			}
			serverTLS, clientTLS, err := componentTLS(ca, "bbs", listen)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(home, 0o700); err != nil {
				return err
			}
			store, err := bbs.OpenSQLStore(cmd.Context(), db)
			if err != nil {
				return err
			}
			defer store.Close()
			var auc bbs.Auctioneer
			if auctioneerURL != "" {
				auc = auctioneer.NewClient(auctioneerURL, clientTLS)
			}
			svc := bbs.NewService(bbs.Config{ConvergeInterval: converge, CellTTL: cellTTL, TaskCallbackTLS: clientTLS, Logger: logger},
				store, auc, rep.NewClient(clientTLS))
			srv := bbs.NewServer(bbs.ServerConfig{Listen: listen, TLS: serverTLS, Logger: logger}, svc)
			svc.Start()
			defer svc.Stop()
			if err := srv.Start(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bbs listening on https://%s\n", srv.Addr())
			s := waitForSignal()
			logger.Info("bbs-stopping", "signal", s.String())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Stop(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8889", "address of the BBS API (mutual TLS)")
	f.StringVar(&db, "db", "", "database: a SQLite path or sqlite:// URL, or a postgres:// URL (default $MINICF_HOME/bbs.db)")
	f.StringVar(&auctioneerURL, "auctioneer", "https://127.0.0.1:9016", "auctioneer URL (empty: instances wait UNCLAIMED)")
	f.StringVar(&home, "home", "", "state directory with the foundation CA (default $MINICF_HOME or ~/.minicf)")
	f.DurationVar(&converge, "converge-interval", 30*time.Second, "how often convergence runs")
	f.DurationVar(&cellTTL, "cell-ttl", 15*time.Second, "a cell without a heartbeat for this long is gone")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}
