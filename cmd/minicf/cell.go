package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/rep"
)

func cellCommand() *cobra.Command {
	var id, listen, bbsURL, home, root, zone, level string
	var memoryMB, diskMB, containers int32
	var heartbeat, grace, proxyReload, poll time.Duration
	var portStart int
	var stopAll bool
	cmd := &cobra.Command{
		Use:   "cell",
		Short: "Run a Diego cell: the rep, its executor and Garden (process mode)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(os.Stderr, level, "rep")
			if err != nil {
				return err
			}
			logger = logger.With("cell_id", id)
			if home == "" {
				home = minicfHome()
			}
			if root == "" {
				root = filepath.Join(home, "cells", id)
			}
			ca, err := foundationCA(home)
			if err != nil {
				return err
			}
			serverTLS, clientTLS, err := componentTLS(ca, "rep-"+id, listen)
			if err != nil {
				return err
			}
			g, err := garden.NewProcessGarden(garden.ProcessConfig{Root: root, PortRangeStart: portStart, Logger: logger})
			if err != nil {
				return err
			}
			r, err := rep.New(rep.Config{
				CellID: id, Zone: zone, Listen: listen,
				Capacity:          bbs.CellCapacity{MemoryMB: memoryMB, DiskMB: diskMB, Containers: containers},
				HeartbeatInterval: heartbeat, PollInterval: poll, GracePeriod: grace, ProxyReloadWait: proxyReload,
				Logger: logger,
			}, bbs.NewClient(bbsURL, clientTLS), g, ca, serverTLS)
			if err != nil {
				return err
			}
			if err := r.Start(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cell %s: rep listening on %s\n", id, r.URL())
			s := waitForSignal()
			logger.Info("rep-stopping", "signal", s.String(), "stop_instances", stopAll)
			ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
			defer cancel()
			if stopAll {
				return r.StopAll(ctx)
			}
			return r.Stop(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "cell-1", "cell id")
	f.StringVar(&listen, "listen", "127.0.0.1:1801", "address of the rep API (mutual TLS; port 0 picks one)")
	f.StringVar(&bbsURL, "bbs", "https://127.0.0.1:8889", "BBS URL")
	f.StringVar(&home, "home", "", "state directory with the foundation CA (default $MINICF_HOME or ~/.minicf)")
	f.StringVar(&root, "root", "", "where containers live (default $MINICF_HOME/cells/<id>)")
	f.StringVar(&zone, "zone", "", "availability zone")
	f.Int32Var(&memoryMB, "memory-mb", 8192, "memory the cell offers")
	f.Int32Var(&diskMB, "disk-mb", 32768, "disk the cell offers")
	f.Int32Var(&containers, "containers", 100, "containers the cell offers")
	f.IntVar(&portStart, "port-range-start", 61000, "first host port for containers")
	f.DurationVar(&heartbeat, "heartbeat-interval", 5*time.Second, "how often the cell renews its presence")
	f.DurationVar(&poll, "poll-interval", 30*time.Second, "how often the rep reconciles its containers with the BBS")
	f.DurationVar(&grace, "grace-period", 10*time.Second, "time between SIGTERM and SIGKILL when an instance stops")
	f.DurationVar(&proxyReload, "proxy-reload-wait", 5*time.Second, "wait after invalidating a sidecar's identity before stopping the instance")
	f.BoolVar(&stopAll, "stop-instances", false, "stop every instance on exit (default: leave them for the next rep to adopt)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}
