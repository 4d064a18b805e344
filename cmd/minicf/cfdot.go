package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/bbs"
)

func cfdotCommand() *cobra.Command {
	var bbsURL, home, domain, cell, process string
	cmd := &cobra.Command{
		Use:   "cfdot desired-lrps|actual-lrps|cells|domains",
		Short: "Read the BBS as Diego's cfdot does: one JSON object per line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if home == "" {
				home = minicfHome()
			}
			ca, err := foundationCA(home)
			if err != nil {
				return err
			}
			_, clientTLS, err := componentTLS(ca, "cfdot", "")
			if err != nil {
				return err
			}
			c := bbs.NewClient(bbsURL, clientTLS)
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			enc := json.NewEncoder(cmd.OutOrStdout())
			switch args[0] {
			case "desired-lrps":
				list, err := c.DesiredLRPs(ctx, bbs.DesiredLRPsRequest{Domain: domain})
				if err != nil {
					return err
				}
				for _, d := range list {
					enc.Encode(d)
				}
			case "actual-lrps":
				list, err := c.ActualLRPs(ctx, bbs.ActualLRPsRequest{Domain: domain, CellID: cell, ProcessGUID: process})
				if err != nil {
					return err
				}
				for _, a := range list {
					enc.Encode(a)
				}
			case "cells":
				list, err := c.Cells(ctx)
				if err != nil {
					return err
				}
				for _, p := range list {
					enc.Encode(p)
				}
			case "domains":
				list, err := c.Domains(ctx)
				if err != nil {
					return err
				}
				for _, d := range list {
					enc.Encode(d)
				}
			default:
				return fmt.Errorf("cfdot does not know %q: use desired-lrps, actual-lrps, cells or domains", args[0])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&bbsURL, "bbs", "https://127.0.0.1:8889", "BBS URL")
	f.StringVar(&home, "home", "", "state directory with the foundation CA (default $MINICF_HOME or ~/.minicf)")
	f.StringVar(&domain, "domain", "", "only this domain")
	f.StringVar(&cell, "cell-id", "", "actual-lrps: only this cell")
	f.StringVar(&process, "process-guid", "", "actual-lrps: only this process")
	return cmd
}
