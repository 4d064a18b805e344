package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/cli"
)

// cliCommands are the cf-like verbs (push, apps, app, routes, ...) that
// drive a running foundation's Cloud Controller with the token and target
// `minicf up` wrote to $MINICF_HOME/config.json. A failing verb prints
// FAILED and its reason itself, then exits 1.
func cliCommands() []*cobra.Command {
	return cli.Commands(cli.Options{Home: minicfHome(), Exit: os.Exit})
}
