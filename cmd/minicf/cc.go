package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc"
	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/mbus"
)

func ccCommand() *cobra.Command {
	var listen, internalListen, externalURL, internalURL, bbsURL, natsURL, db, home, domain, level, tokenFile string
	var syncInterval time.Duration
	var maxPackage int64
	cmd := &cobra.Command{
		Use:   "cc",
		Short: "Run the Cloud Controller: the v3 API, staging as Diego Tasks, LRPs in the BBS, the log cache",
		Long: `Run the Cloud Controller, minicf's cloud_controller_ng: the v3 API (apps,
processes, packages, builds, droplets, routes, destinations, apply_manifest)
behind a bearer token, a log cache fed from NATS, and the internal API (mutual
TLS) cells download packages and droplets from. Starting an app desires its
LRP in the BBS; a sync every --sync-interval repairs any drift.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(os.Stderr, level, "cc")
			if err != nil {
				return err
			}
			if home == "" {
				home = minicfHome()
			}
			if err := os.MkdirAll(home, 0o700); err != nil {
				return err
			}
			ca, err := foundationCA(home)
			if err != nil {
				return err
			}
			_, clientTLS, err := componentTLS(ca, "cc", internalListen)
			if err != nil {
				return err
			}
			var bus cc.Bus
			if natsURL != "" {
				nc, err := mbus.Connect(mbus.ClientConfig{URLs: strings.Split(natsURL, ","), Name: "minicf-cc", Logger: logger})
				if err != nil {
					return err
				}
				defer nc.Close()
				bus = nc
			}
			c, err := cc.New(cc.Config{
				Listen: listen, InternalListen: internalListen, ExternalURL: externalURL, InternalURL: internalURL,
				DB: db, StateDir: filepath.Join(home, "cc"), SharedDomain: domain, SyncInterval: syncInterval,
				MaxPackageBytes: maxPackage, Logger: logger,
			}, bbs.NewClient(bbsURL, clientTLS), bus, ca)
			if err != nil {
				return err
			}
			if err := c.Start(cmd.Context()); err != nil {
				c.Stop(context.Background())
				return err
			}
			if tokenFile != "" {
				tok, err := c.IssueToken("admin", 24*time.Hour)
				if err == nil {
					err = os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600)
				}
				if err != nil {
					c.Stop(context.Background())
					return fmt.Errorf("cannot write the admin token: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cc listening on %s (internal API %s)\n", c.URL(), c.InternalURL())
			s := waitForSignal()
			logger.Info("cc-stopping", "signal", s.String())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return c.Stop(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", cc.DefaultListen, "address of the v3 API")
	f.StringVar(&internalListen, "internal-listen", cc.DefaultInternalListen, "address of the internal API (mutual TLS; cells and the BBS call it)")
	f.StringVar(&externalURL, "external-url", "", "base URL of absolute links (default: http://<the request's Host>)")
	f.StringVar(&internalURL, "internal-url", "", "the internal API as cells reach it (default https://<internal-listen>)")
	f.StringVar(&bbsURL, "bbs", "https://127.0.0.1:8889", "BBS URL")
	f.StringVar(&natsURL, "nats", "", "NATS URL(s), comma-separated, for the log cache (empty: no app logs)")
	f.StringVar(&db, "db", "", "database: a SQLite path or sqlite:// URL, or a postgres:// URL (default $MINICF_HOME/cc/cc.db)")
	f.StringVar(&home, "home", "", "state directory with the foundation CA (default $MINICF_HOME or ~/.minicf)")
	f.StringVar(&domain, "domain", cc.DefaultSharedDomain, "the shared domain apps get routes on")
	f.DurationVar(&syncInterval, "sync-interval", cc.DefaultSyncInterval, "how often the CC repairs drift between its apps and the BBS's LRPs")
	f.Int64Var(&maxPackage, "max-package-bytes", cc.DefaultMaxPackageBytes, "largest app package, uploaded and unpacked")
	f.StringVar(&tokenFile, "admin-token-file", "", "write an admin bearer token (valid 24 h) to this file (0600)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}
