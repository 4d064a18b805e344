package faults

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// verdict is what a case makes of one answer.
type verdict int

const (
	vOK        verdict = iota // the app under test answered
	vFailed                   // an error, or a status the case did not expect
	vMisrouted                // someone else answered: another app, another route
	vRefused                  // the connection was refused: never accepted, so not lost (a drained router)
)

// shot is one request's outcome: its verdict, the key of who answered (an
// instance guid, a backend name) and, for failures, what happened.
type shot struct {
	v    verdict
	key  string
	desc string
}

// load is a steady request load: workers, each with its own keep-alive
// client, send a request, judge the answer and wait `every` before the next,
// until stop.
type load struct {
	name  string
	start time.Time

	sent, ok, failed, misrouted, refused atomic.Int64
	firstRefused                         atomic.Int64 // unix ns

	mu        sync.Mutex
	failures  []string             // the first few, with their time since start
	misroutes []string             // likewise
	byKey     map[string]int       // ok answers by key
	firstSeen map[string]time.Time // when each key first answered

	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	elapsed time.Duration
}

const keptExamples = 8

// startLoad runs workers × fire, each worker pausing every between requests.
// Its cleanup stops it, so a failing case does not leave it running.
func startLoad(t testing.TB, name string, workers int, every time.Duration, fire func(c *http.Client) shot) *load {
	l := newLoad(t, name)
	for i := 0; i < workers; i++ {
		c := suite.NewHTTPClient(t)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.quit:
					return
				default:
				}
				s := fire(c)
				l.record(s)
				select {
				case <-l.quit:
					return
				case <-time.After(every):
				}
			}
		}()
	}
	return l
}

// newLoad is a load without workers: the case sends the requests itself
// and records each answer.
func newLoad(t testing.TB, name string) *load {
	l := &load{name: name, start: time.Now(), byKey: map[string]int{}, firstSeen: map[string]time.Time{},
		quit: make(chan struct{})}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *load) record(s shot) {
	l.sent.Add(1)
	at := time.Since(l.start).Round(time.Millisecond)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s.v {
	case vOK:
		l.ok.Add(1)
		l.byKey[s.key]++
		if _, seen := l.firstSeen[s.key]; !seen {
			l.firstSeen[s.key] = time.Now()
		}
	case vFailed:
		l.failed.Add(1)
		if len(l.failures) < keptExamples {
			l.failures = append(l.failures, fmt.Sprintf("+%v %s", at, s.desc))
		}
	case vRefused:
		l.refused.Add(1)
		l.firstRefused.CompareAndSwap(0, time.Now().UnixNano())
	case vMisrouted:
		l.misrouted.Add(1)
		if len(l.misroutes) < keptExamples {
			l.misroutes = append(l.misroutes, fmt.Sprintf("+%v %s", at, s.desc))
		}
	}
}

// stop ends the load and waits for the requests in flight.
func (l *load) stop() {
	l.once.Do(func() {
		close(l.quit)
		l.wg.Wait()
		l.elapsed = time.Since(l.start)
	})
}

// settle moves ok answers whose key legit rejects to misrouted: who an
// instance guid belongs to is known for sure only once the case is over.
func (l *load) settle(legit func(key string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, n := range l.byKey {
		if legit(k) {
			continue
		}
		l.ok.Add(-int64(n))
		l.misrouted.Add(int64(n))
		if len(l.misroutes) < keptExamples {
			l.misroutes = append(l.misroutes, fmt.Sprintf("%d answers from %q, not an instance of the app", n, k))
		}
		delete(l.byKey, k)
	}
}

// finish stops the load, prints its figures and returns them.
func (l *load) finish(t testing.TB) (sent, ok, failed, misrouted int64) {
	t.Helper()
	l.stop()
	sent, ok, failed, misrouted = l.sent.Load(), l.ok.Load(), l.failed.Load(), l.misrouted.Load()
	refused := ""
	if n := l.refused.Load(); n > 0 {
		refused = fmt.Sprintf(" (and %d connections refused)", n)
	}
	t.Logf("%s: sent %d, ok %d, failed %d, misrouted %d%s over %v (%.0f req/s)", l.name, sent, ok, failed, misrouted, refused,
		l.elapsed.Round(time.Millisecond), float64(sent)/l.elapsed.Seconds())
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.byKey) > 0 {
		keys := make([]string, 0, len(l.byKey))
		for k := range l.byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, l.byKey[k]))
		}
		t.Logf("%s: answers by responder: %s", l.name, strings.Join(parts, ", "))
	}
	for _, f := range l.failures {
		t.Logf("%s: failure %s", l.name, f)
	}
	for _, m := range l.misroutes {
		t.Logf("%s: misrouted %s", l.name, m)
	}
	return sent, ok, failed, misrouted
}

// expectClean fails the case unless every answer was ok.
func (l *load) expectClean(t testing.TB) {
	t.Helper()
	sent, _, failed, misrouted := l.finish(t)
	if failed > 0 || misrouted > 0 {
		t.Errorf("%s: %d of %d requests failed and %d were misrouted; want none", l.name, failed, sent, misrouted)
	}
	if sent < 20 {
		t.Errorf("%s: only %d requests were sent: the load did not run", l.name, sent)
	}
}

// waitProgress waits until n more ok answers have come, proving the load
// still gets through.
func (l *load) waitProgress(t testing.TB, n int64, within time.Duration) {
	t.Helper()
	from := l.ok.Load()
	deadline := time.Now().Add(within)
	for l.ok.Load() < from+n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d ok answers in %v, wanted %d (failed so far %d)", l.name, l.ok.Load()-from, within, n, l.failed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seenAt is when key first answered, if it has.
func (l *load) seenAt(key string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.firstSeen[key]
	return at, ok
}
