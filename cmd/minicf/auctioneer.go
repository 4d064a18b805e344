package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/auctioneer"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/rep"
)

func auctioneerCommand() *cobra.Command {
	var listen, bbsURL, home, level string
	cmd := &cobra.Command{
		Use:   "auctioneer",
		Short: "Run the auctioneer (Diego's): places LRP instances on cells",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(os.Stderr, level, "auctioneer")
			if err != nil {
				return err
			}
			if home == "" {
				home = minicfHome()
			}
			ca, err := foundationCA(home)
			if err != nil {
				return err
			}
			serverTLS, clientTLS, err := componentTLS(ca, "auctioneer", listen)
			if err != nil {
				return err
			}
			a, err := auctioneer.New(auctioneer.Config{Listen: listen, Logger: logger},
				bbs.NewClient(bbsURL, clientTLS), rep.NewClient(clientTLS), serverTLS)
			if err != nil {
				return err
			}
			if err := a.Start(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "auctioneer listening on https://%s\n", a.Addr())
			s := waitForSignal()
			logger.Info("auctioneer-stopping", "signal", s.String())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return a.Stop(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:9016", "address of the auctioneer API (mutual TLS)")
	f.StringVar(&bbsURL, "bbs", "https://127.0.0.1:8889", "BBS URL")
	f.StringVar(&home, "home", "", "state directory with the foundation CA (default $MINICF_HOME or ~/.minicf)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}
