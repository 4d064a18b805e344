package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/foundation"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/logging"
)

func cellCommand() *cobra.Command {
	var id, listen, bbsURL, home, root, zone, level string
	var memoryMB, diskMB, containers int32
	var heartbeat, grace, proxyReload, poll time.Duration
	var portStart int
	var stopAll, routeIntegrity bool
	var mode, networkRange, prefix string
	var index int
	cmd := &cobra.Command{
		Use:   "cell",
		Short: "Run a Diego cell: the rep, its executor and Garden (process or namespace mode)",
		Long: `Run a Diego cell: the rep, its executor and Garden.

In namespace mode (root, Linux, ip and iptables) the cell is a network
namespace <prefix>-cell-N on the foundation bridge <prefix>0, each container
a namespace of its own with an overlay address from the cell's /24, and each
host port a DNAT rule in the cell (chain netin--<handle>). The foundation
range (--network-range) is checked against the host's routes, addresses and
DNS resolvers first. With --stop-instances the cell is torn down on exit
(and the bridge with the last cell); otherwise it stays for the next run to
adopt. 'minicf down' removes whatever is left.

In process mode each instance is a plain process on loopback ports.`,
		Args: cobra.NoArgs,
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
			mode, why, err := foundation.ResolveMode(mode)
			if err != nil {
				return err
			}
			logger.Info("cell-mode-selected", "mode", mode, "reason", why)
			var nw *garden.Network
			if mode == garden.ModeNamespace {
				if nw, err = garden.NewNetwork(prefix, networkRange); err != nil {
					return err
				}
				if index == 0 {
					if index = trailingNumber(id); index == 0 {
						return fmt.Errorf("cell %s: the id has no trailing number: give the cell's number with --index", id)
					}
				}
			}
			cell := foundation.NewCell(foundation.CellConfig{
				ID: id, Index: index, Zone: zone, Listen: listen, Root: root, Mode: mode, Network: nw,
				PortRangeStart: portStart, Capacity: bbs.CellCapacity{MemoryMB: memoryMB, DiskMB: diskMB, Containers: containers},
				RouteIntegrity: routeIntegrity, HeartbeatInterval: heartbeat, PollInterval: poll, GracePeriod: grace,
				ProxyReloadWait: proxyReload, StopInstances: stopAll,
				BBS: bbs.NewClient(bbsURL, clientTLS), CA: ca, ServerTLS: serverTLS, ClientTLS: clientTLS, Logger: logger,
			})
			if err := cell.Start(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cell %s: rep listening on %s (%s mode, address %s)\n", id, cell.Rep().URL(), mode, cell.Garden().ExternalIP())
			s := waitForSignal()
			logger.Info("rep-stopping", "signal", s.String(), "stop_instances", stopAll)
			ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
			defer cancel()
			return cell.Stop(ctx)
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
	f.BoolVar(&stopAll, "stop-instances", false, "stop every instance on exit, and in namespace mode remove the cell's network (default: leave them for the next rep to adopt)")
	f.StringVar(&mode, "mode", garden.ModeProcess, "namespace, process or auto (namespace where root, Linux, ip and iptables are available)")
	f.StringVar(&networkRange, "network-range", garden.DefaultNetworkRange, "the foundation's /16 (namespace mode): cells in x.y.0.0/24, cell N's containers in x.y.N.0/24")
	f.IntVar(&index, "index", 0, "the cell's number on the foundation network, 1-244 (default: the id's trailing number)")
	f.BoolVar(&routeIntegrity, "route-integrity", true, "run the envoy sidecar and map only its TLS port (false: no sidecar, the app port is mapped)")
	f.StringVar(&prefix, "prefix", garden.DefaultPrefix, "name prefix of the foundation's namespaces, links and cgroups (namespace mode)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}

var trailingNumberRE = regexp.MustCompile(`([0-9]+)$`)

// trailingNumber is the number an id ends with (cell-3 -> 3), 0 if none.
func trailingNumber(id string) int {
	m := trailingNumberRE.FindString(id)
	n, err := strconv.Atoi(m)
	if err != nil {
		return 0
	}
	return n
}
