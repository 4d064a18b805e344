package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestStartsInOrderAndStopsInReverse(t *testing.T) {
	var log []string
	member := func(name string, fail bool) Component {
		return Func(name, func(context.Context) error {
			log = append(log, "start "+name)
			if fail {
				return errors.New("boom")
			}
			return nil
		}, func(context.Context) error {
			log = append(log, "stop "+name)
			return nil
		})
	}
	g := New(nil, member("nats", false), member("bbs", false), member("router", false))
	if err := g.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	g.Stop(context.Background())
	if got := strings.Join(log, ","); got != "start nats,start bbs,start router,stop router,stop bbs,stop nats" {
		t.Fatalf("order: %s", got)
	}

	log = nil
	g = New(nil, member("nats", false), member("bbs", true), member("router", false))
	err := g.Start(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "bbs did not start: boom") {
		t.Fatalf("error %v", err)
	}
	if got := strings.Join(log, ","); got != "start nats,start bbs,stop nats" {
		t.Fatalf("a failed start must stop what started, in reverse: %s", got)
	}
}
