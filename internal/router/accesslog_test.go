package router

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/minicf/minicf/internal/testutil"
)

// blockingWriter holds every Write until released, as a stuck disk would.
type blockingWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	entered chan struct{}
	release chan struct{}
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func TestAccessLogKeepsOrderAcrossShards(t *testing.T) {
	var out bytes.Buffer
	a := NewAccessLog(&out, nil)
	start := time.Unix(1000, 0)
	// Requests finishing in this order land on random shards; the file
	// must still list them by the time they finished.
	for i := 0; i < 200; i++ {
		r, _ := http.NewRequest(http.MethodGet, "http://a.localhost/", nil)
		r.RequestURI = "/" + strings.Repeat("x", i%7) + "?i=" + time.Duration(i).String()
		st := &reqState{start: start.Add(time.Duration(i) * time.Millisecond), status: 200}
		a.Log(r, st, time.Millisecond)
	}
	a.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 200 {
		t.Fatalf("%d lines, want 200", len(lines))
	}
	for i, l := range lines {
		if want := "?i=" + time.Duration(i).String() + " "; !strings.Contains(l, want) {
			t.Fatalf("line %d is %q, want the request with %q", i, l, want)
		}
	}
}

func TestAccessLogBoundsMemoryWhenTheWriterIsStuck(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	a := NewAccessLog(w, nil)
	r, _ := http.NewRequest(http.MethodGet, "http://a.localhost/", nil)
	r.RequestURI = "/" + strings.Repeat("p", 200)
	st := &reqState{start: time.Now(), status: 200}
	// Fill until the flusher is stuck in Write, then flood.
	logged := 0
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		a.Log(r, st, time.Millisecond)
		logged++
		select {
		case <-w.entered:
			return nil
		default:
			return errors.New("flusher not writing yet")
		}
	})
	perShard := maxShardHold / 300
	flood := (len(a.shards) + 2) * perShard * 2
	for i := 0; i < flood; i++ {
		a.Log(r, st, time.Millisecond)
	}
	logged += flood
	if a.Dropped() == 0 {
		t.Fatalf("no line dropped after %d lines with the writer stuck", flood)
	}
	held := 0
	for i := range a.shards {
		a.shards[i].mu.Lock()
		held += len(a.shards[i].buf)
		a.shards[i].mu.Unlock()
	}
	if limit := len(a.shards) * (maxShardHold + 1024); held > limit {
		t.Fatalf("shards hold %d bytes, more than %d", held, limit)
	}
	close(w.release)
	a.Close()
	written := strings.Count(w.buf.String(), "\n")
	if int64(written)+a.Dropped() != int64(logged) {
		t.Fatalf("%d lines written + %d dropped != %d logged", written, a.Dropped(), logged)
	}
}

// A flood with a stuck writer may fill the shards to their bound, but once
// traffic is back to a trickle the log must not keep the flood's buffers.
func TestAccessLogLetsGoOfAFloodsBuffers(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	a := NewAccessLog(w, nil)
	defer a.Close()
	r, _ := http.NewRequest(http.MethodGet, "http://a.localhost/", nil)
	r.RequestURI = "/" + strings.Repeat("p", 200)
	st := &reqState{start: time.Now(), status: 200}
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		a.Log(r, st, time.Millisecond)
		select {
		case <-w.entered:
			return nil
		default:
			return errors.New("flusher not writing yet")
		}
	})
	for i := 0; i < len(a.shards)*maxShardHold/300*3; i++ {
		a.Log(r, st, time.Millisecond)
	}
	close(w.release)
	for i := 0; i < 10; i++ {
		a.Log(r, st, time.Millisecond)
		a.Flush()
	}
	held := 0
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		held += cap(sh.buf) + cap(sh.spareBuf) + (cap(sh.lines)+cap(sh.spareLines))*int(unsafe.Sizeof(logLine{}))
		sh.mu.Unlock()
	}
	a.flushMu.Lock()
	held += cap(a.outBuf) + cap(a.merged)*int(unsafe.Sizeof(logLine{}))
	a.flushMu.Unlock()
	if limit := len(a.shards)*4*maxShardBuf + 2*maxFlushKeep; held > limit {
		t.Fatalf("%d bytes kept after the flood, more than %d", held, limit)
	}
}

func TestAccessLogCloseFromSeveralGoroutines(t *testing.T) {
	a := NewAccessLog(io.Discard, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { a.Close() })
	}
	wg.Wait()
}
