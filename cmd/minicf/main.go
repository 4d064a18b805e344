// Command minicf is the one binary of minicf, a small Cloud Foundry: each
// verb runs one component (router, nats, ...) or talks to a running
// foundation. The verbs only wire components together; the components live
// in internal/.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "minicf",
		Short:         "A small, faithful Cloud Foundry that does route propagation for real",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(upCommand(), demoCommand(), routerCommand(), natsCommand(), envoyCommand(),
		bbsCommand(), auctioneerCommand(), cellCommand(), cfdotCommand(), downCommand(),
		ccCommand(), routeEmitterCommand(), traceCommand())
	root.AddCommand(cliCommands()...)
	root.AddCommand(lifecycleCommands()...)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "minicf:", err)
		os.Exit(1)
	}
}
