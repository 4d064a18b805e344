// Command lifecycle is the rep tests' lifecycle binary: minicf's builder
// and launcher verbs without the rest of minicf (cmd/minicf registers the
// same two verbs through cobra).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/minicf/minicf/internal/lifecycle"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lifecycle builder|launcher ARGS...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "builder":
		err = lifecycle.RunBuilder(context.Background(), os.Args[2:], os.Stdout, os.Stderr)
	case "launcher":
		err = lifecycle.RunLauncher(os.Args[2:])
	default:
		err = fmt.Errorf("unknown verb %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "minicf:", err)
		os.Exit(1)
	}
}
