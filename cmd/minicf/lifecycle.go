package main

import (
	"github.com/spf13/cobra"

	"github.com/minicf/minicf/internal/lifecycle"
)

// lifecycleCommands are the buildpack lifecycle's verbs, hidden: cells run
// them in containers in place of /tmp/lifecycle/builder and
// /tmp/lifecycle/launcher (package lifecycle has the contracts). They parse
// their own flags, so that they take exactly the lifecycle's arguments.
func lifecycleCommands() []*cobra.Command {
	builder := &cobra.Command{
		Use:                "builder --app-dir DIR --output-droplet FILE --result FILE [--command CMD]",
		Short:              "Stage an app's files into a droplet (the buildpack lifecycle's builder; run by cells)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return lifecycle.RunBuilder(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	launcher := &cobra.Command{
		Use:                "launcher APP_DIR START_COMMAND [METADATA]",
		Short:              "Run a droplet's start command in its app directory (the buildpack lifecycle's launcher; run by cells)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return lifecycle.RunLauncher(args)
		},
	}
	return []*cobra.Command{builder, launcher}
}
