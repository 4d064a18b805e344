package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/demo"
	"github.com/minicf/minicf/internal/logging"
)

func demoCommand() *cobra.Command {
	var route, level string
	var hold time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Propagate a route end to end on embedded defaults and curl it through the router",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(os.Stderr, level, "demo")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if ctx == nil {
				ctx = context.Background()
			}
			return demo.Run(ctx, demo.Options{Route: route, Out: cmd.OutOrStdout(), Logger: logger, Hold: hold})
		},
	}
	cmd.Flags().StringVar(&route, "route", "myapp.apps.localhost", "route to register and curl")
	cmd.Flags().DurationVar(&hold, "hold", 0, "keep the foundation up this long after the curl, to explore it")
	cmd.Flags().StringVar(&level, "log-level", "warn", "component log level: debug, info, warn or error")
	return cmd
}
