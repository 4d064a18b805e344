// Package logging builds the structured loggers every minicf component uses:
// JSON lines through log/slog, one stable kebab-case event name per line.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a JSON logger at level (debug, info, warn or error).
func New(w io.Writer, level, component string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q is not debug, info, warn or error", level)
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
	return slog.New(h).With("component", component), nil
}
