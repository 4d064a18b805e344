package demo

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestDemoPropagatesARouteAndCurlsIt(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Options{
		Route:  "demo-test.apps.localhost",
		Out:    &out,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"published router.register on NATS",
		"-> 200\nHello from the example app",
		`"private_instance_id"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
