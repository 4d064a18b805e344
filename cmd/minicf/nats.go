package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/logging"
	"github.com/minicf/minicf/internal/mbus"
)

func natsCommand() *cobra.Command {
	var listen, user, password, level string
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "Run the embedded NATS server on its own (the bus between emitters and routers)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(os.Stderr, level, "nats")
			if err != nil {
				return err
			}
			host, port, err := splitHostPort(listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			srv, err := mbus.NewServer(mbus.ServerConfig{Host: host, Port: port, User: user, Password: password, Logger: logger})
			if err != nil {
				return err
			}
			if err := srv.Start(); err != nil {
				return err
			}
			defer srv.Stop()
			fmt.Fprintf(cmd.OutOrStdout(), "nats listening on %s\n", srv.URL())
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			s := <-sig
			logger.Info("nats-stopping", "signal", s.String())
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:4222", "address to listen on (port 0 picks one)")
	cmd.Flags().StringVar(&user, "user", "nats", "user clients authenticate as")
	cmd.Flags().StringVar(&password, "password", "nats", "password clients authenticate with")
	cmd.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q has no valid port", addr)
	}
	return host, port, nil
}
