package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/garden"
)

// downCommand removes what namespace mode made, also after a crash.
func downCommand() *cobra.Command {
	var prefix, home string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove every namespace, link, chain, cgroup and container process of a namespace-mode foundation",
		Long: `Remove everything namespace mode made for the foundation named --prefix,
whatever state a crashed run left it in: the processes in its container and
cell namespaces (SIGKILL), the namespaces (with the cells' iptables chains
and the containers' links), the bridge <prefix>0 and the cell links
<prefix>-cN in the root namespace (with their routes), and the memory
cgroups <prefix>/. Only names of the prefix's own patterns are touched.
With --home, the namespace containers' directories under <home>/cells go too.
Running it again finds nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			report, err := garden.Down(ctx, prefix)
			if report != nil {
				fmt.Fprint(cmd.OutOrStdout(), report.String())
			}
			var errs []error
			if err != nil {
				errs = append(errs, err)
			}
			if home != "" {
				cells, _ := filepath.Glob(filepath.Join(home, "cells", "*"))
				for _, root := range cells {
					if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
						continue
					}
					removed, err := garden.RemoveNamespaceContainers(root, prefix)
					for _, d := range removed {
						fmt.Fprintf(cmd.OutOrStdout(), "container directory: %s\n", d)
					}
					if err != nil {
						errs = append(errs, err)
					}
				}
			}
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", garden.DefaultPrefix, "name prefix of the foundation (the cells' --prefix)")
	f.StringVar(&home, "home", "", "also remove the namespace containers' directories under <home>/cells")
	return cmd
}
