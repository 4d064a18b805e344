package router

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/minicf/minicf/internal/mbus"
)

// FileConfig is the router's YAML configuration. Keys follow gorouter's where
// gorouter has one; every key has a default, so an empty file is valid.
type FileConfig struct {
	Listen string `yaml:"listen"`
	Status struct {
		Listen   string `yaml:"listen"`
		User     string `yaml:"user"`
		Password string `yaml:"password"`
		// Pprof serves Go's profiler under /debug/pprof/ on the status port,
		// for finding where a slow router spends its time.
		Pprof bool `yaml:"pprof"`
	} `yaml:"status"`
	NATS struct {
		URLs     []string `yaml:"urls"`
		User     string   `yaml:"user"`
		Password string   `yaml:"password"`
		// EmbeddedListen is where the embedded NATS server listens when no
		// URL is given.
		EmbeddedListen string `yaml:"embedded_listen"`
	} `yaml:"nats"`
	Index                           int           `yaml:"index"`
	StartResponseDelay              time.Duration `yaml:"start_response_delay"`
	MinimumRegisterInterval         time.Duration `yaml:"minimum_register_interval"`
	PruneStaleDropletsInterval      time.Duration `yaml:"prune_stale_droplets_interval"`
	DropletStaleThreshold           time.Duration `yaml:"droplet_stale_threshold"`
	SuspendPruningIfNATSUnavailable bool          `yaml:"suspend_pruning_if_nats_unavailable"`
	BalancingAlgorithm              string        `yaml:"balancing_algorithm"`
	EndpointTimeout                 time.Duration `yaml:"endpoint_timeout"`
	ReadHeaderTimeout               time.Duration `yaml:"read_header_timeout"`
	FrontendIdleTimeout             time.Duration `yaml:"frontend_idle_timeout"`
	MaxHeaderBytes                  int           `yaml:"max_header_bytes"`
	DrainWait                       time.Duration `yaml:"drain_wait"`
	DrainTimeout                    time.Duration `yaml:"drain_timeout"`
	StickySessionCookieNames        []string      `yaml:"sticky_session_cookie_names"`
	Backends                        struct {
		MaxAttempts int           `yaml:"max_attempts"`
		CAFile      string        `yaml:"ca_file"`
		CertFile    string        `yaml:"cert_file"`
		KeyFile     string        `yaml:"key_file"`
		DialTimeout time.Duration `yaml:"dial_timeout"`
		IdleTimeout time.Duration `yaml:"idle_timeout"`
		// IdleProbeAfter: a backend connection idle this long is checked
		// for a close by the app before it carries a request.
		IdleProbeAfter         time.Duration `yaml:"idle_probe_after"`
		MaxIdleConnsPerBackend int           `yaml:"max_idle_conns_per_backend"`
		MaxResponseHeaderBytes int64         `yaml:"max_response_header_bytes"`
	} `yaml:"backends"`
	AccessLog struct {
		// File is a path, "stdout", or empty for no file.
		File           string `yaml:"file"`
		PublishAppLogs bool   `yaml:"publish_app_logs"`
	} `yaml:"access_log"`
	Logging struct {
		Level string `yaml:"level"`
	} `yaml:"logging"`
}

// DefaultFileConfig is gorouter's BOSH defaults, moved to loopback. The
// start-up delay is shorter than gorouter's 20 s because minicf's emitter
// answers router.start within a second.
func DefaultFileConfig() FileConfig {
	var c FileConfig
	c.Listen = "127.0.0.1:8081"
	c.Status.Listen = "127.0.0.1:8082"
	c.NATS.User = "nats"
	c.NATS.Password = "nats"
	c.NATS.EmbeddedListen = "127.0.0.1:4222"
	c.StartResponseDelay = 2 * time.Second
	c.MinimumRegisterInterval = 20 * time.Second
	c.PruneStaleDropletsInterval = 30 * time.Second
	c.DropletStaleThreshold = 120 * time.Second
	c.SuspendPruningIfNATSUnavailable = true
	c.BalancingAlgorithm = mbus.LBRoundRobin
	c.EndpointTimeout = 900 * time.Second
	c.ReadHeaderTimeout = 10 * time.Second
	c.FrontendIdleTimeout = 900 * time.Second
	c.MaxHeaderBytes = 1 << 20
	c.DrainWait = 20 * time.Second
	c.DrainTimeout = 60 * time.Second
	c.StickySessionCookieNames = []string{"JSESSIONID"}
	c.Backends.MaxAttempts = 3
	c.Backends.DialTimeout = 5 * time.Second
	c.Backends.IdleTimeout = 30 * time.Second
	c.Backends.IdleProbeAfter = time.Second
	c.Backends.MaxIdleConnsPerBackend = 100
	c.Backends.MaxResponseHeaderBytes = 1 << 20
	c.AccessLog.PublishAppLogs = true
	c.Logging.Level = "info"
	return c
}

// LoadFileConfig reads path over the defaults. Unknown keys are an error:
// a misspelt timer silently left at its default is worse than a refusal.
func LoadFileConfig(path string) (FileConfig, error) {
	c := DefaultFileConfig()
	if path == "" {
		return c, c.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("cannot read the router config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("router config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("router config %s: %w", path, err)
	}
	return c, nil
}

// Validate names the first setting that cannot work.
func (c *FileConfig) Validate() error {
	for name, addr := range map[string]string{"listen": c.Listen, "status.listen": c.Status.Listen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s %q is not host:port: %v", name, addr, err)
		}
	}
	for name, d := range map[string]time.Duration{
		"minimum_register_interval":     c.MinimumRegisterInterval,
		"prune_stale_droplets_interval": c.PruneStaleDropletsInterval,
		"droplet_stale_threshold":       c.DropletStaleThreshold,
		"endpoint_timeout":              c.EndpointTimeout,
		"read_header_timeout":           c.ReadHeaderTimeout,
		"frontend_idle_timeout":         c.FrontendIdleTimeout,
		"drain_timeout":                 c.DrainTimeout,
		"backends.dial_timeout":         c.Backends.DialTimeout,
		"backends.idle_timeout":         c.Backends.IdleTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be a positive duration such as 30s, not %v", name, d)
		}
	}
	if c.StartResponseDelay < 0 || c.DrainWait < 0 || c.Backends.IdleProbeAfter < 0 {
		return errors.New("start_response_delay, drain_wait and backends.idle_probe_after must not be negative")
	}
	switch c.BalancingAlgorithm {
	case mbus.LBRoundRobin, mbus.LBLeastConnection:
	default:
		return fmt.Errorf("balancing_algorithm %q is not %s or %s", c.BalancingAlgorithm, mbus.LBRoundRobin, mbus.LBLeastConnection)
	}
	if c.Backends.MaxAttempts < 1 {
		return fmt.Errorf("backends.max_attempts must be at least 1, not %d", c.Backends.MaxAttempts)
	}
	if c.MaxHeaderBytes < 1024 {
		return fmt.Errorf("max_header_bytes must be at least 1024, not %d", c.MaxHeaderBytes)
	}
	if (c.Backends.CertFile == "") != (c.Backends.KeyFile == "") {
		return errors.New("backends.cert_file and backends.key_file go together: set both or neither")
	}
	switch c.Logging.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("logging.level %q is not debug, info, warn or error", c.Logging.Level)
	}
	return nil
}

// BackendTLS builds the TLS client settings for route integrity: the CA that
// instance certificates must chain to, and an optional client certificate.
func (c *FileConfig) BackendTLS() (*tls.Config, error) {
	cfg := &tls.Config{}
	if c.Backends.CAFile != "" {
		pem, err := os.ReadFile(c.Backends.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the backend CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend CA %s holds no PEM certificate", c.Backends.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.Backends.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.Backends.CertFile, c.Backends.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot load the backend client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
