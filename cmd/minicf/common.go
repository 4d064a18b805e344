package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/minicf/minicf/internal/identity"
)

// minicfHome is the state directory: $MINICF_HOME, else ~/.minicf.
func minicfHome() string {
	if h := os.Getenv("MINICF_HOME"); h != "" {
		return h
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".minicf")
	}
	return ".minicf"
}

// foundationCA loads (or on first use creates) the foundation's CA.
func foundationCA(home string) (*identity.CA, error) {
	ca, err := identity.LoadOrCreate(filepath.Join(home, "identity"))
	if err != nil {
		return nil, fmt.Errorf("foundation CA in %s: %w", home, err)
	}
	return ca, nil
}

// componentTLS issues a component certificate for mutual TLS, valid for
// loopback and the host of listen, and returns server and client configs.
func componentTLS(ca *identity.CA, name, listen string) (server, client *tls.Config, err error) {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	cred, err := ca.IssueComponent(name, hosts, 0)
	if err != nil {
		return nil, nil, err
	}
	if server, err = ca.ServerTLS(cred); err != nil {
		return nil, nil, err
	}
	if client, err = ca.ClientTLS(cred); err != nil {
		return nil, nil, err
	}
	return server, client, nil
}

// waitForSignal blocks until SIGTERM or SIGINT.
func waitForSignal() os.Signal {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	return <-sig
}
