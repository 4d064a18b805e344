package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minicf/minicf/integration/harness"
	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/testutil"
)

// TestFaults_Diego runs the faults of issue 8 that need the whole path, one
// after another on one world (starting a world costs seconds): each case
// first brings the world back to its steady state, then runs its load, its
// fault and its checks.
func TestFaults_Diego(t *testing.T) {
	t.Parallel()
	w := startWorld(t)
	t.Logf("world: %s mode, BBS %s, router %s, NATS %s", w.mode, w.BBSURL, w.router.Addr, w.natsURL)

	t.Run("rolling restart and scale-down", func(t *testing.T) { rollingRestartAndScaleDown(t, w) })
	t.Run("SIGKILL of one of two instances", func(t *testing.T) { sigkillInstance(t, w) })
	t.Run("NATS killed and restarted", func(t *testing.T) { natsRestart(t, w) })
	t.Run("route emitter killed and restarted", func(t *testing.T) { emitterRestart(t, w) })
	t.Run("BBS killed and restarted", func(t *testing.T) { bbsRestart(t, w) })
	t.Run("rep killed and restarted", func(t *testing.T) { repRestart(t, w) })
	t.Run("cell lost", func(t *testing.T) { cellLost(t, w) })
}

// B5 #29: a rolling restart of a two-instance app, one instance at a time,
// then a scale-down to one, with zero failed requests. Each stop invalidates
// the sidecar's identity first (routers fail the handshake and retry the
// other instance), waits the proxy reload time, then stops the processes
// and removes the ActualLRP, which unregisters the route.
func rollingRestartAndScaleDown(t *testing.T, w *world) {
	web := w.baseline(t)
	l := w.webLoad(t, "rolling restart and scale-down")
	l.waitProgress(t, 20, 5*time.Second)
	for _, old := range web {
		start := time.Now()
		w.retire(t, old)
		var replacement string
		testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			list, err := w.actuals(webApp)
			if err != nil {
				return err
			}
			for _, a := range list {
				if a.Index == old.Index && a.State == bbs.StateRunning && a.InstanceGUID != old.InstanceGUID {
					replacement = a.InstanceGUID
				}
			}
			if replacement == "" {
				return fmt.Errorf("index %d not replaced yet: %s", old.Index, describe(list))
			}
			return nil
		})
		running := w.waitSteady(t, webApp, 2, 10*time.Second)
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if _, ok := l.seenAt(replacement); !ok {
				return fmt.Errorf("no request reached the new instance %s yet", replacement)
			}
			return nil
		})
		t.Logf("instance %d: %s stopped, %s serves in its place after %v (router: %v)", old.Index, old.InstanceGUID,
			replacement, time.Since(start).Round(time.Millisecond), runningGuids(running))
	}
	start := time.Now()
	w.scale(t, webApp, 1)
	left := w.waitSteady(t, webApp, 1, 30*time.Second)
	t.Logf("scaled 2 → 1 in %v: %s left", time.Since(start).Round(time.Millisecond), left[0].InstanceGUID)
	// The removed instance is gone from the cell before the load stops.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(w.mustActuals(t, webApp)); n != 1 {
			return fmt.Errorf("%d ActualLRPs", n)
		}
		return nil
	})
	l.waitProgress(t, 20, 5*time.Second)
	w.finishWeb(t, l)
}

// Issue 8: SIGKILL of one of two instances under load. No request that
// could have been retried fails (every request is a GET), the instance is
// back within seconds, and gets traffic again. First the app process alone
// dies (its sidecar still answers TLS, then finds no app), then a whole
// instance (app and sidecar: dials fail).
func sigkillInstance(t *testing.T, w *world) {
	web := w.baseline(t)
	l := w.webLoad(t, "SIGKILL of one instance")
	l.waitProgress(t, 20, 5*time.Second)
	for i, victim := range web {
		what := "the app process"
		app, envoy := instancePids(victim.InstanceGUID)
		pids := app
		if i == 1 {
			what = "the app and its envoy"
			pids = append(pids, envoy...)
		}
		if len(app) != 1 {
			t.Fatalf("instance %s: app pids %v, want one", victim.InstanceGUID, app)
		}
		killed := time.Now()
		sigkill(t, what+" of "+victim.InstanceGUID, pids)
		var back string
		var backAt time.Time
		testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
			list, err := w.actuals(webApp)
			if err != nil {
				return err
			}
			for _, a := range list {
				if a.Index == victim.Index && a.State == bbs.StateRunning && a.InstanceGUID != victim.InstanceGUID {
					back, backAt = a.InstanceGUID, time.Unix(0, a.Since)
				}
			}
			if back == "" {
				return fmt.Errorf("index %d not back yet: %s", victim.Index, describe(list))
			}
			return nil
		})
		var trafficAt time.Time
		testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			at, ok := l.seenAt(back)
			if !ok {
				return fmt.Errorf("no request reached %s yet", back)
			}
			trafficAt = at
			return nil
		})
		t.Logf("SIGKILL of %s of instance %d: RUNNING again as %s after %v, first request served by it after %v",
			what, victim.Index, back, backAt.Sub(killed).Round(time.Millisecond), trafficAt.Sub(killed).Round(time.Millisecond))
		if d := trafficAt.Sub(killed); d > 10*time.Second {
			t.Errorf("the instance took %v to get traffic again, want seconds", d)
		}
		w.waitSteady(t, webApp, 2, 10*time.Second)
	}
	w.finishWeb(t, l)
}

// Issue 8 and B5 #7-#10: NATS killed and restarted under load. Requests
// keep succeeding throughout (TLS routes are not pruned by age, and
// pruning is suspended while NATS is away); after NATS is back, the router's
// table is whole (the instances started and stopped meanwhile in and out)
// within one heartbeat.
func natsRestart(t *testing.T, w *world) {
	w.baseline(t)
	l := w.webLoad(t, "NATS killed and restarted")
	l.waitProgress(t, 20, 5*time.Second)
	disconnects := w.router.CountMsg("nats-connection-disconnected")
	killed := time.Now()
	w.nats.Kill(t)
	w.router.WaitForMsg(t, "nats-connection-disconnected", disconnects+1, 5*time.Second)
	// While the bus is down, instance 0 is restarted (its unregister and its
	// replacement's register go nowhere, or into a client's reconnect
	// buffer) and a third instance starts.
	web := w.mustActuals(t, webApp)
	var old *bbs.ActualLRP
	for _, a := range web {
		if a.Index == 0 {
			old = a
		}
	}
	w.retire(t, old)
	w.scale(t, webApp, 3)
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		list, err := w.actuals(webApp)
		if err != nil {
			return err
		}
		run := runningGuids(list)
		if len(run) != 3 || slices.Contains(run, old.InstanceGUID) {
			return fmt.Errorf("want 3 RUNNING without %s: %s", old.InstanceGUID, describe(list))
		}
		return nil
	})
	// And NATS stays down for longer than the stale threshold (3 s).
	for time.Since(killed) < 4*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	l.waitProgress(t, 20, 5*time.Second)
	truth := runningGuids(w.mustActuals(t, webApp))
	w.nats = w.nats.Respawn(t)
	harness.WaitNATS(t, w.nats, w.natsPort)
	back := time.Now()
	var took time.Duration
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := w.router.InstanceIDs(t, appHost(webApp)); !slices.Equal(got, truth) {
			return fmt.Errorf("the router has %v, the BBS runs %v", got, truth)
		}
		took = time.Since(back)
		return nil
	})
	t.Logf("NATS down %v; after it was back the router's table was whole in %v (register interval %v, client reconnect wait 500ms)",
		back.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond), registerInterval)
	// One heartbeat, plus the clients' reconnect wait, plus slack for two
	// shared cores under the race detector.
	if budget := registerInterval + 500*time.Millisecond + 500*time.Millisecond; took > budget {
		t.Errorf("the router's table was whole %v after NATS came back, more than one heartbeat (budget %v)", took, budget)
	}
	l.waitProgress(t, 20, 5*time.Second)
	w.finishWeb(t, l)
}

// B5 #45: the route emitter SIGKILLed and started again. No request fails,
// no running instance is unregistered, and every route is registered again
// within a heartbeat of the new emitter's start.
func emitterRestart(t *testing.T, w *world) {
	w.baseline(t)
	hosts := []string{appHost(webApp), appHost(otherApp)}
	before := map[string][]string{}
	for _, h := range hosts {
		before[h] = w.router.InstanceIDs(t, h)
	}
	rec := harness.RecordBus(t, w.router.Bus)
	l := w.webLoad(t, "route emitter killed and restarted")
	l.waitProgress(t, 20, 5*time.Second)
	killed := time.Now()
	w.emitter.Kill(t)
	// Longer than a heartbeat and the stale threshold without an emitter.
	time.Sleep(3500 * time.Millisecond)
	l.waitProgress(t, 20, 5*time.Second)
	restarted := time.Now()
	w.emitter = w.emitter.Respawn(t)
	w.emitter.WaitForMsg(t, "route-emitter-started", 1, 30*time.Second)
	up := time.Now()
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		for _, h := range hosts {
			seen := map[string]bool{}
			for _, m := range rec.Since(restarted, "router.register") {
				if len(m.URIs) == 1 && m.URIs[0] == h {
					seen[m.PrivateInstanceID] = true
				}
			}
			for _, id := range before[h] {
				if !seen[id] {
					return fmt.Errorf("no registration of %s %s since the restart", h, id)
				}
			}
		}
		return nil
	})
	t.Logf("emitter down %v; every route registered again %v after it was up", restarted.Sub(killed).Round(time.Millisecond),
		time.Since(up).Round(time.Millisecond))
	for _, h := range hosts {
		if got := w.router.InstanceIDs(t, h); !slices.Equal(got, before[h]) {
			t.Errorf("%s: the router has %v after the restart, %v before", h, got, before[h])
		}
	}
	if un := rec.Since(killed, "router.unregister"); len(un) > 0 {
		t.Errorf("the emitter restart unregistered running instances: %+v", un)
	}
	l.waitProgress(t, 20, 5*time.Second)
	w.finishWeb(t, l)
}

// Issue 8: the BBS SIGKILLed and started again on its database. No request
// fails, and the running instances stay as they are: same instance guids,
// no duplicate, no replacement (the cells were never gone).
func bbsRestart(t *testing.T, w *world) {
	w.baseline(t)
	before := map[string][]string{}
	for _, g := range []string{webApp, otherApp} {
		before[g] = runningGuids(w.mustActuals(t, g))
	}
	l := w.webLoad(t, "BBS killed and restarted")
	l.waitProgress(t, 20, 5*time.Second)
	killed := time.Now()
	w.BBS.Kill(t)
	time.Sleep(time.Second)
	l.waitProgress(t, 20, 5*time.Second)
	w.BBS = w.BBS.Respawn(t)
	w.BBS.WaitForMsg(t, "bbs-listening", 1, 20*time.Second)
	t.Logf("BBS down %v", time.Since(killed).Round(time.Millisecond))
	// Give a wrong convergence every chance to happen (the cells' TTL and
	// two convergence rounds), watching for instances that are no longer
	// the ones that ran, and for how long the old ones run on beside them.
	var wrong []string
	gone := map[string]bool{}           // before-instances the BBS no longer has
	lastAlive := map[string]time.Time{} // ... and when their app was last seen running
	goneAt := map[string]time.Time{}
	deadline := time.Now().Add(cellTTL + 2*convergeInterval)
	oldAlive := false // a dropped instance's app still runs
	for time.Now().Before(deadline) || (oldAlive && time.Now().Before(deadline.Add(2*repPollInterval+gracePeriod))) {
		for _, g := range []string{webApp, otherApp} {
			list, err := w.actuals(g)
			if err != nil {
				continue
			}
			now := runningGuids(list)
			if len(list) != len(before[g]) || !slices.Equal(now, before[g]) {
				if len(wrong) < 5 {
					wrong = append(wrong, fmt.Sprintf("+%v %s: %s", time.Since(killed).Round(time.Millisecond), g, describe(list)))
				}
			}
			have := map[string]bool{}
			for _, a := range list {
				have[a.InstanceGUID] = true
			}
			for _, old := range before[g] {
				if !have[old] && !gone[old] {
					gone[old], goneAt[old] = true, time.Now()
				}
			}
		}
		oldAlive = false
		for old := range gone {
			if app, _ := instancePids(old); len(app) > 0 {
				lastAlive[old] = time.Now()
				oldAlive = true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(wrong) > 0 {
		t.Errorf("after the BBS restart the running instances changed, although no cell went away; want %v and %v as before:\n%s",
			before[webApp], before[otherApp], strings.Join(wrong, "\n"))
		for old := range gone {
			if lastAlive[old].IsZero() {
				t.Errorf("instance %s was replaced by the restarted BBS", old)
				continue
			}
			t.Errorf("instance %s was replaced by the restarted BBS; its app ran on for %v after the BBS dropped it",
				old, lastAlive[old].Sub(goneAt[old]).Round(time.Millisecond))
		}
	}
	if n := w.BBS.CountMsg("convergence-changed-lrps"); n > 0 {
		t.Logf("the restarted BBS's convergence changed LRPs: %v", w.BBS.LinesWithMsg("convergence-changed-lrps"))
	}
	// The emitter follows the new BBS: a new route reaches the router.
	extra := "web-again.apps.localhost"
	routes := bbs.Routes{}.SetCFRoutes([]bbs.CFRoute{{Hostnames: []string{appHost(webApp), extra}, Port: 8080}})
	if err := w.Client.UpdateDesiredLRP(context.Background(), webApp, &bbs.DesiredLRPUpdate{Routes: &routes}); err != nil {
		t.Fatal(err)
	}
	mapped := time.Now()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(w.router.Routes(t)[extra]); n != 2 {
			return fmt.Errorf("%s has %d endpoints", extra, n)
		}
		return nil
	})
	t.Logf("a route mapped after the BBS restart reached the router in %v", time.Since(mapped).Round(time.Millisecond))
	routes = bbs.Routes{}.SetCFRoutes([]bbs.CFRoute{{Hostnames: []string{appHost(webApp)}, Port: 8080}})
	if err := w.Client.UpdateDesiredLRP(context.Background(), webApp, &bbs.DesiredLRPUpdate{Routes: &routes}); err != nil {
		t.Fatal(err)
	}
	w.waitSteady(t, webApp, 2, 30*time.Second)
	w.finishWeb(t, l)
}

// Issue 8: a cell's rep SIGKILLed and started again. No request fails, and
// the rep adopts or replaces its running instances without duplicates:
//   - started again at once, it adopts the instances that kept running: the
//     same instance guids, nothing replaced;
//   - away for longer than the cell TTL, its instances are replaced on the
//     other cell, and the restarted rep destroys the old containers: one
//     container and one app process per instance again.
func repRestart(t *testing.T, w *world) {
	w.baseline(t)
	victim := w.mustActuals(t, webApp)[0].CellID
	snapshot := func() (guids map[string][]string, onVictim []string) {
		guids = map[string][]string{}
		for _, g := range []string{webApp, otherApp} {
			list := w.mustActuals(t, g)
			guids[g] = runningGuids(list)
			for _, a := range list {
				if a.CellID == victim {
					onVictim = append(onVictim, a.InstanceGUID)
				}
			}
		}
		return guids, onVictim
	}

	// At once: adoption.
	before, onVictim := snapshot()
	l := w.webLoad(t, "rep killed and restarted at once")
	l.waitProgress(t, 20, 5*time.Second)
	killed := time.Now()
	w.Cells[victim].Kill(t)
	w.Cells[victim] = w.Cells[victim].Respawn(t)
	w.Cells[victim].WaitForMsg(t, "rep-started", 1, 30*time.Second)
	t.Logf("%s's rep down %v (it ran %d instances)", victim, time.Since(killed).Round(time.Millisecond), len(onVictim))
	if n := w.Cells[victim].CountMsg("reconcile-adopted"); n != len(onVictim) {
		t.Errorf("the new rep adopted %d instances, want the %d that ran on %s: %v", n, len(onVictim), victim,
			w.Cells[victim].LinesWithMsg("reconcile-adopted"))
	}
	// Two reconcile rounds and a convergence later, nothing has changed.
	deadline := time.Now().Add(2*repPollInterval + convergeInterval)
	for time.Now().Before(deadline) {
		for _, g := range []string{webApp, otherApp} {
			list, err := w.actuals(g)
			if err != nil {
				t.Fatal(err)
			}
			if got := runningGuids(list); len(list) != len(before[g]) || !slices.Equal(got, before[g]) {
				t.Errorf("%s after the rep restart: %s, want only %v RUNNING (adopted, not replaced)", g, describe(list), before[g])
				deadline = time.Time{}
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.checkNoDuplicates(t, before, nil)
	w.waitSteady(t, webApp, 2, 10*time.Second)
	w.finishWeb(t, l)

	// Away past the cell TTL: replacement.
	before, onVictim = snapshot()
	l = w.webLoad(t, "rep away longer than the cell TTL")
	l.waitProgress(t, 20, 5*time.Second)
	killed = time.Now()
	w.Cells[victim].Kill(t)
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, g := range []string{webApp, otherApp} {
			list, err := w.actuals(g)
			if err != nil {
				return err
			}
			for _, a := range list {
				if a.CellID == victim || a.State != bbs.StateRunning {
					return fmt.Errorf("%s: %s", g, describe(list))
				}
			}
			if len(list) != len(before[g]) {
				return fmt.Errorf("%s: %s", g, describe(list))
			}
		}
		return nil
	})
	replaced := time.Since(killed)
	restarted := time.Now()
	w.Cells[victim] = w.Cells[victim].Respawn(t)
	w.Cells[victim].WaitForMsg(t, "rep-started", 1, 30*time.Second)
	after, _ := snapshot()
	var gone time.Duration
	testutil.CheckFor(t, 2*repPollInterval+gracePeriod+5*time.Second, 50*time.Millisecond, func() error {
		for _, g := range onVictim {
			if app, envoy := instancePids(g); len(app)+len(envoy) > 0 {
				return fmt.Errorf("the replaced instance %s still runs (app %v, envoy %v)", g, app, envoy)
			}
		}
		gone = time.Since(restarted)
		return nil
	})
	t.Logf("%s's rep away: its %d instances replaced on the other cell after %v; the restarted rep removed the old ones %v after its start",
		victim, len(onVictim), replaced.Round(time.Millisecond), gone.Round(time.Millisecond))
	if n := w.Cells[victim].CountMsg("reconcile-adopted"); n != 0 {
		t.Errorf("the restarted rep adopted %d instances the BBS had already replaced", n)
	}
	w.checkNoDuplicates(t, after, onVictim)
	w.waitSteady(t, webApp, 2, 10*time.Second)
	w.finishWeb(t, l)
}

// checkNoDuplicates: one app process, one envoy and one container for each
// running instance, nothing for the replaced ones.
func (w *world) checkNoDuplicates(t testing.TB, running map[string][]string, replaced []string) {
	t.Helper()
	var all []string
	for _, g := range running {
		all = append(all, g...)
	}
	for _, g := range all {
		app, envoy := instancePids(g)
		if len(app) != 1 || len(envoy) != 1 {
			t.Errorf("instance %s has app processes %v and envoys %v, want one of each", g, app, envoy)
		}
	}
	for _, g := range replaced {
		if app, envoy := instancePids(g); len(app)+len(envoy) > 0 {
			t.Errorf("the replaced instance %s still has app processes %v and envoys %v", g, app, envoy)
		}
	}
	var containers []string
	for id := range w.Cells {
		entries, _ := os.ReadDir(filepath.Join(w.Home, "cells", id, "containers"))
		for _, e := range entries {
			containers = append(containers, e.Name())
		}
	}
	slices.Sort(containers)
	slices.Sort(all)
	if !slices.Equal(containers, all) {
		t.Errorf("containers on the cells %v, want one per running instance %v", containers, all)
	}
}

// Issue 8 and B5 #30's failure side: a whole cell lost. In namespace mode
// its network namespace is deleted (its containers fall off the network)
// and its rep is SIGKILLed. Within the cell TTL and a convergence round,
// its instances run again on the other cell, and the router stops sending
// to the lost cell.
func cellLost(t *testing.T, w *world) {
	if w.mode != garden.ModeNamespace {
		harness.RequireNetns(t)
	}
	web := w.spread(t)
	victim := web[0].CellID
	survivor := "cell-1"
	if victim == survivor {
		survivor = "cell-2"
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(victim, "cell-"))
	lostIP := w.nw.CellIP(n).String()
	l := w.webLoad(t, "cell lost")
	l.waitProgress(t, 20, 5*time.Second)
	lost := time.Now()
	if out, err := exec.Command("ip", "netns", "delete", w.nw.CellNS(n)).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete %s: %v\n%s", w.nw.CellNS(n), err, out)
	}
	w.Cells[victim].Kill(t)
	// Both are watched together: when the instances run again elsewhere,
	// and when the router no longer has an endpoint on the lost cell.
	var replacedAt, routerCleanAt time.Time
	replaced := func() error {
		for _, g := range []string{webApp, otherApp} {
			list, err := w.actuals(g)
			if err != nil {
				return err
			}
			d, _ := w.Client.DesiredLRPByProcessGUID(context.Background(), g)
			running := 0
			for _, a := range list {
				if a.CellID == victim {
					return fmt.Errorf("%s still has an instance on %s: %s", g, victim, describe(list))
				}
				if a.State == bbs.StateRunning {
					running++
				}
			}
			if d == nil || running != int(d.Instances) {
				return fmt.Errorf("%s: %s", g, describe(list))
			}
		}
		return nil
	}
	routerClean := func() error {
		for h, eps := range w.router.Routes(t) {
			for _, e := range eps {
				if strings.HasPrefix(e.Address, lostIP+":") {
					return fmt.Errorf("the router still routes %s to the lost cell (%s)", h, e.Address)
				}
			}
		}
		return nil
	}
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		var errReplaced, errRouter error
		if replacedAt.IsZero() {
			if errReplaced = replaced(); errReplaced == nil {
				replacedAt = time.Now()
			}
		}
		if routerCleanAt.IsZero() {
			if errRouter = routerClean(); errRouter == nil {
				routerCleanAt = time.Now()
			}
		}
		if errReplaced != nil {
			return errReplaced
		}
		return errRouter
	})
	// And it stays so: the emitter does not bring the lost endpoints back.
	time.Sleep(2 * registerInterval)
	if err := routerClean(); err != nil {
		t.Errorf("%v, %v after the cell was lost", err, time.Since(lost).Round(time.Millisecond))
	}
	routerCleanAfter := routerCleanAt.Sub(lost)
	t.Logf("%s lost: its instances ran again on %s after %v (cell TTL %v, convergence %v); the router stopped routing to %s after %v",
		victim, survivor, replacedAt.Sub(lost).Round(time.Millisecond), cellTTL, convergeInterval, lostIP, routerCleanAfter.Round(time.Millisecond))
	if budget := cellTTL + 2*convergeInterval + 5*time.Second; replacedAt.Sub(lost) > budget {
		t.Errorf("replacement took %v, more than the cell TTL, a convergence round and a start (%v)", replacedAt.Sub(lost), budget)
	}
	w.waitSteady(t, webApp, 2, 10*time.Second)
	l.waitProgress(t, 20, 5*time.Second)
	w.finishWeb(t, l)
}

// spread is baseline with web's two instances on different cells, so that
// losing one cell leaves the app an instance to answer: earlier cases may
// have put both on one cell. It retires the second instance until the
// auctioneer (spread, least loaded) places it on the other cell.
func (w *world) spread(t *testing.T) []*bbs.ActualLRP {
	t.Helper()
	web := w.baseline(t)
	for attempt := 0; web[0].CellID == web[1].CellID; attempt++ {
		if attempt == 3 {
			t.Fatalf("web's instances stay together on %s", web[0].CellID)
		}
		w.retire(t, web[1])
		testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			for _, a := range w.mustActuals(t, webApp) {
				if a.Index == 1 && a.InstanceGUID == web[1].InstanceGUID {
					return fmt.Errorf("instance 1 (%s) not stopped yet", a.InstanceGUID)
				}
			}
			return nil
		})
		web = w.waitSteady(t, webApp, 2, 30*time.Second)
	}
	return web
}
