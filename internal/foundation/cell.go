package foundation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/mbus"
	"github.com/minicf/minicf/internal/rep"
	"github.com/minicf/minicf/internal/trace"
)

// CellConfig describes one Diego cell: Garden (process or namespace mode)
// and the rep in front of it.
type CellConfig struct {
	ID    string
	Index int // cell number: its namespace, cell IP and /24 in namespace mode
	Zone  string
	// Listen is the rep API's address (port 0 picks one).
	Listen string
	Root   string // where containers live
	// Mode is garden.ModeProcess or garden.ModeNamespace (resolved, not auto).
	Mode string
	// Network is the foundation's network in namespace mode.
	Network        *garden.Network
	PortRangeStart int
	Capacity       bbs.CellCapacity
	RouteIntegrity bool
	// Timers: zero values take the rep's defaults (Diego's).
	HeartbeatInterval, PollInterval, GracePeriod, ProxyReloadWait time.Duration
	// StopInstances makes Stop stop every instance and remove the cell's
	// network; otherwise instances are left for the next rep to adopt.
	StopInstances bool
	// Quiet makes that stop local: the BBS is not told (the whole
	// foundation is going down, so nothing should be re-placed).
	Quiet     bool
	BBS       *bbs.Client
	CA        *identity.CA
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	AppLogs   func(mbus.AppLog)
	// GardenTrace and RepTrace record flow 1's steps (nil: none).
	GardenTrace, RepTrace trace.Emitter
	Logger                *slog.Logger
}

// Cell is a running cell, a supervisor component.
type Cell struct {
	cfg       CellConfig
	garden    *garden.Garden
	rep       *rep.Rep
	stopNetin context.CancelFunc
	netinDone chan struct{}
}

// NewCell prepares a cell; Start builds its network and starts the rep.
func NewCell(cfg CellConfig) *Cell { return &Cell{cfg: cfg} }

// Name is the cell id.
func (c *Cell) Name() string { return "cell " + c.cfg.ID }

// Rep is the cell's rep, once started.
func (c *Cell) Rep() *rep.Rep { return c.rep }

// Garden is the cell's Garden, once started.
func (c *Cell) Garden() *garden.Garden { return c.garden }

// Start makes the cell's network (namespace mode), its Garden and its rep.
func (c *Cell) Start(ctx context.Context) error {
	cfg := c.cfg
	log := cfg.Logger
	var err error
	if cfg.Mode == garden.ModeNamespace {
		if cfg.Network == nil {
			return errors.New("namespace mode needs the foundation network")
		}
		cellIP, err := cfg.Network.EnsureCell(ctx, cfg.Index)
		if err != nil {
			return err
		}
		log.Info("cell-network-ready", "cell_ns", cfg.Network.CellNS(cfg.Index), "cell_ip", cellIP.String(),
			"bridge", cfg.Network.BridgeName(), "subnet", cfg.Network.CellSubnet(cfg.Index).String())
		c.garden, err = garden.NewNamespaceGarden(garden.NamespaceConfig{Root: cfg.Root, Network: cfg.Network, Cell: cfg.Index,
			PortRangeStart: cfg.PortRangeStart, HTTPClient: downloadClient(cfg.ClientTLS), Trace: cfg.GardenTrace, Logger: log})
		if err != nil {
			return errors.Join(err, c.teardown())
		}
		netinCtx, stop := context.WithCancel(context.Background())
		c.stopNetin, c.netinDone = stop, make(chan struct{})
		go func() {
			defer close(c.netinDone)
			// Repair the cell's netin chains as the networker's periodic sync would.
			c.garden.Netin().Run(netinCtx, 10*time.Second)
		}()
	} else {
		c.garden, err = garden.NewProcessGarden(garden.ProcessConfig{Root: cfg.Root, PortRangeStart: cfg.PortRangeStart,
			HTTPClient: downloadClient(cfg.ClientTLS), Trace: cfg.GardenTrace, Logger: log})
		if err != nil {
			return err
		}
	}
	ri := cfg.RouteIntegrity
	c.rep, err = rep.New(rep.Config{
		CellID: cfg.ID, Zone: cfg.Zone, Listen: cfg.Listen, Capacity: cfg.Capacity,
		HeartbeatInterval: cfg.HeartbeatInterval, PollInterval: cfg.PollInterval,
		GracePeriod: cfg.GracePeriod, ProxyReloadWait: cfg.ProxyReloadWait,
		RouteIntegrity: &ri, AppLogs: cfg.AppLogs, ClientTLS: cfg.ClientTLS, Trace: cfg.RepTrace, Logger: log,
	}, cfg.BBS, c.garden, cfg.CA, cfg.ServerTLS)
	if err != nil {
		return errors.Join(err, c.stopNetwork())
	}
	if err := c.rep.Start(ctx); err != nil {
		return errors.Join(fmt.Errorf("rep of %s: %w", cfg.ID, err), c.stopNetwork())
	}
	return nil
}

// Stop stops the rep; with StopInstances also every instance and the
// cell's network.
func (c *Cell) Stop(ctx context.Context) error {
	if c.rep == nil {
		return c.stopNetwork()
	}
	if !c.cfg.StopInstances {
		err := c.rep.Stop(ctx)
		c.haltNetin()
		return err
	}
	stop := c.rep.StopAll
	if c.cfg.Quiet {
		stop = c.rep.Shutdown
	}
	return errors.Join(stop(ctx), c.stopNetwork())
}

func (c *Cell) haltNetin() {
	if c.stopNetin != nil {
		c.stopNetin()
		<-c.netinDone
		c.stopNetin = nil
	}
}

func (c *Cell) stopNetwork() error {
	c.haltNetin()
	if !c.cfg.StopInstances {
		return nil
	}
	return c.teardown()
}

func (c *Cell) teardown() error {
	if c.cfg.Mode != garden.ModeNamespace || c.cfg.Network == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	report, err := c.cfg.Network.TeardownCell(ctx, c.cfg.Index)
	if report != nil {
		c.cfg.Logger.Info("cell-network-removed", "cell_ns", c.cfg.Network.CellNS(c.cfg.Index), "namespaces", report.Namespaces,
			"links", report.Links, "routes", report.Routes, "cgroups", report.Cgroups, "killed", report.Killed)
	}
	return err
}

// downloadClient fetches packages and droplets from the Cloud Controller's
// internal API, which wants a foundation client certificate.
func downloadClient(clientTLS *tls.Config) *http.Client {
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: clientTLS,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: time.Minute}}
}

// ResolveMode turns namespace|process|auto into the mode to run, with the
// reason when auto falls back to process mode.
func ResolveMode(mode string) (string, string, error) {
	switch mode {
	case garden.ModeProcess:
		return mode, "", nil
	case garden.ModeNamespace:
		if why := garden.Preflight(); why != "" {
			return "", "", fmt.Errorf("--mode namespace: %s (--mode process runs without)", why)
		}
		return mode, "", nil
	case "auto", "":
		if why := garden.Preflight(); why != "" {
			return garden.ModeProcess, why, nil
		}
		return garden.ModeNamespace, "", nil
	}
	return "", "", fmt.Errorf("--mode %q: want namespace, process or auto", mode)
}
