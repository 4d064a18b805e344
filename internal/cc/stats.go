package cc

import (
	"context"
	"net/http"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/cc/ccapi"
)

// Process stats come from the BBS's ActualLRPs of the process's LRP, as
// CC's instances reporter reads them: UNCLAIMED and CLAIMED are STARTING,
// RUNNING is RUNNING (routable as the ActualLRP says), CRASHED is CRASHED.
// A started app's index with no ActualLRP yet is STARTING (CC says DOWN,
// but its BBS never lacks one for long; minicf's sync may take a moment),
// so a started app is STARTING until the BBS says RUNNING. A stopped
// app's instances are all DOWN (an empty list would tell the cf CLI the
// app has started).

const fdsQuota = 16384

func (c *CC) processStats(w http.ResponseWriter, r *http.Request) error {
	var v processView
	if err := c.store.read(r.Context(), func(tx *stx) (err error) {
		v, err = c.loadProcess(r, tx)
		return err
	}); err != nil {
		return err
	}
	stats, err := c.stats(r.Context(), v)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"resources": stats})
}

func (c *CC) appProcessStats(w http.ResponseWriter, r *http.Request) error {
	return c.processStats(w, r)
}

func boolPtr(b bool) *bool { return &b }

func (c *CC) baseStat(p *processRec, index int) ccapi.ProcessStat {
	now := c.now()
	return ccapi.ProcessStat{
		Type: p.Type, Index: index, State: ccapi.InstanceDown, Routable: boolPtr(false),
		InstancePorts: []ccapi.InstancePort{},
		MemQuota:      int64(p.MemoryMB) << 20, DiskQuota: int64(p.DiskMB) << 20,
		LogRateLimit: p.LogRateLimit, FdsQuota: fdsQuota, Usage: ccapi.Usage{Time: &now},
	}
}

// stats are the process's instances, index 0 to instances-1.
func (c *CC) stats(ctx context.Context, v processView) ([]ccapi.ProcessStat, error) {
	p := v.p
	out := make([]ccapi.ProcessStat, 0, p.Instances)
	if !v.started {
		for i := 0; i < p.Instances; i++ {
			out = append(out, c.baseStat(p, i))
		}
		return out, nil
	}
	if c.bbs == nil {
		return nil, errf(http.StatusServiceUnavailable, ccapi.ErrStatsUnavailable, "Stats server temporarily unavailable.")
	}
	actuals, err := c.bbs.ActualLRPs(ctx, bbs.ActualLRPsRequest{ProcessGUID: p.lrpGUID()})
	if err != nil {
		c.log.Warn("cc-stats-unavailable", "process_guid", p.lrpGUID(), "error", err.Error())
		return nil, errf(http.StatusServiceUnavailable, ccapi.ErrStatsUnavailable, "Stats server temporarily unavailable.")
	}
	byIndex := map[int]*bbs.ActualLRP{}
	for _, a := range actuals {
		i := int(a.Index)
		if prev := byIndex[i]; prev == nil || preferActual(a, prev) {
			byIndex[i] = a
		}
	}
	nowNs := c.now().UnixNano()
	for i := 0; i < p.Instances; i++ {
		s := c.baseStat(p, i)
		a := byIndex[i]
		if a == nil {
			// Started, but the BBS has no instance for the index yet
			// (the LRP is being desired, or the sync will desire it):
			// STARTING, so the cf CLI waits for it.
			s.State = ccapi.InstanceStarting
			out = append(out, s)
			continue
		}
		switch a.State {
		case bbs.StateUnclaimed, bbs.StateClaimed:
			s.State = ccapi.InstanceStarting
			if a.PlacementError != "" {
				d := a.PlacementError
				s.Details = &d
			}
		case bbs.StateRunning:
			s.State = ccapi.InstanceRunning
			s.Routable = boolPtr(a.IsRoutable())
		case bbs.StateCrashed:
			s.State = ccapi.InstanceCrashed
			if a.CrashReason != "" {
				d := a.CrashReason
				s.Details = &d
			}
		default:
			s.State = ccapi.InstanceDown
		}
		if a.Since > 0 && nowNs > a.Since {
			s.Uptime = (nowNs - a.Since) / 1e9
		}
		s.Host = a.Address
		s.InstanceGUID, s.CellID, s.InstanceAddress = a.InstanceGUID, a.CellID, a.InstanceAddress
		for _, m := range a.Ports {
			s.InstancePorts = append(s.InstancePorts, ccapi.InstancePort{External: int(m.HostPort), Internal: int(m.ContainerPort),
				ExternalTLSProxyPort: int(m.HostTLSProxyPort), InternalTLSProxyPort: int(m.ContainerTLSProxyPort)})
		}
		out = append(out, s)
	}
	return out, nil
}

// preferActual reports whether a should stand for its index rather than
// b: an ordinary instance over an evacuating one, a running one over one
// that is not.
func preferActual(a, b *bbs.ActualLRP) bool {
	ordA, ordB := a.Presence != bbs.PresenceEvacuating, b.Presence != bbs.PresenceEvacuating
	if ordA != ordB {
		return ordA
	}
	return a.State == bbs.StateRunning && b.State != bbs.StateRunning
}
