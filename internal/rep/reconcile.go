package rep

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
)

// ReasonContainerMissing is the crash reason of an ActualLRP the BBS places
// on this cell but for which the cell has no container.
const ReasonContainerMissing = "container missing"

// reconcile is Diego's bulk sync between the cell's containers and the
// BBS's ActualLRPs (and Tasks: reconcileTasks) for the cell:
//   - a container with no ActualLRP of its instance guid on this cell is
//     destroyed (or, if an instance of ours runs in it, stopped);
//   - an ActualLRP (CLAIMED or RUNNING) on this cell with no container is
//     crashed with "container missing";
//   - a container of an earlier run whose ActualLRP is still ours is adopted:
//     its processes are monitored again, without restarting them.
func (r *Rep) reconcile(ctx context.Context) error {
	containers, err := r.garden.Containers()
	if err != nil {
		return err
	}
	actuals, err := r.bbs.ActualLRPs(ctx, bbs.ActualLRPsRequest{CellID: r.cfg.CellID})
	if err != nil {
		return fmt.Errorf("cannot list the cell's ActualLRPs: %w", err)
	}
	ours := map[string]*bbs.ActualLRP{}
	for _, a := range actuals {
		if a.CellID == r.cfg.CellID && a.InstanceGUID != "" && (a.State == bbs.StateClaimed || a.State == bbs.StateRunning) {
			ours[a.InstanceGUID] = a
		}
	}
	// The instances tracked now: any ActualLRP listed above that we claimed
	// is either tracked or recently finished.
	r.mu.Lock()
	tracked := map[string]*instance{}
	for g, in := range r.instances {
		tracked[g] = in
	}
	finished := map[string]bool{}
	for g := range r.finished {
		finished[g] = true
	}
	closing := r.closing
	r.mu.Unlock()
	if closing {
		return nil
	}

	hasContainer := map[string]bool{}
	for _, c := range containers {
		if c.Properties[PropTaskGUID] != "" {
			continue // a Task's: reconcileTasks
		}
		h := c.Handle
		hasContainer[h] = true
		if in := tracked[h]; in != nil {
			if _, ok := ours[h]; !ok && in.getState() != StateReserved {
				r.instanceLog(in).Info("reconcile-stopping", "reason", "its ActualLRP is gone")
				in.requestStop(false)
			}
			continue
		}
		if finished[h] {
			continue // its goroutine is destroying it
		}
		a, ok := ours[h]
		if !ok || c.Properties[PropOwner] != OwnerRep {
			r.log.Info("reconcile-destroyed", "instance_guid", h, "process_guid", c.Properties[PropProcessGUID],
				"reason", "no ActualLRP on this cell has its instance guid")
			if err := r.garden.Destroy(ctx, h, r.cfg.GracePeriod); err != nil {
				r.log.Warn("container-destroy-failed", "instance_guid", h, "error", err.Error())
			}
			continue
		}
		r.adopt(ctx, c, a)
	}
	for g, a := range ours {
		if hasContainer[g] || tracked[g] != nil || finished[g] {
			continue
		}
		err := r.bbs.CrashActualLRP(ctx, a.ActualLRPKey, a.ActualLRPInstanceKey, ReasonContainerMissing)
		if err != nil {
			r.log.Warn("reconcile-crash-failed", "process_guid", a.ProcessGUID, "index", a.Index, "instance_guid", g, "error", err.Error())
			continue
		}
		r.log.Info("reconcile-crashed", "process_guid", a.ProcessGUID, "index", a.Index, "instance_guid", g, "reason", ReasonContainerMissing)
	}
	return r.reconcileTasks(ctx)
}

// adopt takes over a container an earlier run of the rep created.
func (r *Rep) adopt(ctx context.Context, info garden.ContainerInfo, a *bbs.ActualLRP) {
	mem, _ := strconv.Atoi(info.Properties[PropMemoryMB])
	disk, _ := strconv.Atoi(info.Properties[PropDiskMB])
	in := newInstance(a.ActualLRPKey, a.ActualLRPInstanceKey, bbs.Resource{MemoryMB: int32(mem), DiskMB: int32(disk)})
	log := r.instanceLog(in)
	c, missing, err := r.rebuild(info)
	if err == nil && missing != "" {
		err = fmt.Errorf("its %s process is no longer running", missing)
	}
	if err != nil {
		reason := fmt.Sprintf("%s: %v", ReasonContainerMissing, err)
		if missing != "" {
			source := info.Properties[PropSourceType]
			if missing == ProcessSidecar {
				source = "PROXY"
			}
			reason = source + ": Exited while the rep was away"
		}
		log.Info("reconcile-destroyed", "reason", reason)
		if err := r.bbs.CrashActualLRP(ctx, a.ActualLRPKey, a.ActualLRPInstanceKey, reason); err != nil {
			log.Warn("reconcile-crash-failed", "error", err.Error())
		}
		if err := r.garden.Destroy(ctx, info.Handle, r.cfg.GracePeriod); err != nil {
			log.Warn("container-destroy-failed", "error", err.Error())
		}
		return
	}
	var desired *bbs.DesiredLRP
	if a.State == bbs.StateRunning {
		in.setState(StateRunning)
	} else {
		// Its start checks were cut short: run them again.
		in.setState(StateStarting)
		desired, err = r.bbs.DesiredLRPByProcessGUID(ctx, a.ProcessGUID)
		if err != nil {
			log.Warn("reconcile-desired-lrp-unavailable", "error", err.Error())
		}
	}
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return
	}
	r.instances[in.ik.InstanceGUID] = in
	r.insts.Add(1)
	r.mu.Unlock()
	log.Info("reconcile-adopted", "state", a.State, "app_pid", c.app.PID())
	go func() {
		defer r.insts.Done()
		defer r.finish(in)
		r.monitor(in, c, desired, log)
	}()
}

// rebuild reads an adopted container back: its ports, its identity and its
// processes. missing names a process that should run and does not.
func (r *Rep) rebuild(info garden.ContainerInfo) (c *lrpContainer, missing string, err error) {
	procs, err := r.garden.Adopt(info.Handle)
	if err != nil {
		return nil, "", err
	}
	c = &lrpContainer{info: info, sourceType: info.Properties[PropSourceType], logGUID: info.Properties[PropLogGUID],
		certFile: filepath.Join(info.Dir, CredentialsDir, "instance.crt"),
		keyFile:  filepath.Join(info.Dir, CredentialsDir, "instance.key")}
	if c.sourceType == "" {
		c.sourceType = "APP/PROC/WEB"
	}
	c.plan.proxyPorts = map[uint32]uint32{}
	if err := json.Unmarshal([]byte(info.Properties[PropAppPorts]), &c.plan.appPorts); err != nil {
		return nil, "", fmt.Errorf("its %s property is not readable: %w", PropAppPorts, err)
	}
	if p := info.Properties[PropProxyPorts]; p != "" {
		if err := json.Unmarshal([]byte(p), &c.plan.proxyPorts); err != nil {
			return nil, "", fmt.Errorf("its %s property is not readable: %w", PropProxyPorts, err)
		}
	}
	if p, _ := strconv.Atoi(info.Properties[PropAdminPort]); p > 0 {
		c.plan.adminPort = uint32(p)
	}
	_ = json.Unmarshal([]byte(info.Properties[PropCertOU]), &c.ou)
	c.ni = c.plan.netInfo(info)
	for _, p := range procs {
		switch p.ID() {
		case ProcessApp:
			c.app = p
		case ProcessSidecar:
			c.sidecar = p
		}
	}
	if c.app == nil {
		return c, ProcessApp, nil
	}
	if info.Properties[PropRouteIntegrity] == "true" && len(c.plan.proxyPorts) > 0 && c.sidecar == nil {
		return c, ProcessSidecar, nil
	}
	if data, err := os.ReadFile(c.certFile); err == nil {
		if b, _ := pem.Decode(data); b != nil {
			c.leaf, _ = x509.ParseCertificate(b.Bytes)
		}
	}
	return c, "", nil
}

// reconcileTasks is the bulk sync of Tasks:
//   - a Task this rep runs that the BBS no longer has RUNNING on this cell
//     (cancelled, or failed by convergence) is stopped;
//   - a Task container of an earlier run is destroyed, and its Task, if the
//     BBS has it RUNNING here, failed: how it ended cannot be known;
//   - a Task the BBS has RUNNING here with no container is failed with
//     "container missing".
func (r *Rep) reconcileTasks(ctx context.Context) error {
	// What runs here is read before the BBS is asked: a Task running then
	// was started at the BBS before the question.
	r.mu.Lock()
	tracked := map[string]*taskRun{}
	wasRunning := map[string]bool{}
	for g, t := range r.tasks {
		tracked[g] = t
		wasRunning[g] = t.getState() == TaskStateRunning
	}
	finished := map[string]bool{}
	for g := range r.taskFinished {
		finished[g] = true
	}
	closing := r.closing
	r.mu.Unlock()
	if closing {
		return nil
	}
	tasks, err := r.bbs.Tasks(ctx, bbs.TasksRequest{CellID: r.cfg.CellID})
	if err != nil {
		return fmt.Errorf("cannot list the cell's Tasks: %w", err)
	}
	running := map[string]*bbs.Task{}
	for _, t := range tasks {
		if t.CellID == r.cfg.CellID && t.State == bbs.TaskStateRunning {
			running[t.TaskGUID] = t
		}
	}
	containers, err := r.garden.Containers()
	if err != nil {
		return err
	}
	hasContainer := map[string]bool{}
	for _, c := range containers {
		g := c.Properties[PropTaskGUID]
		if g == "" {
			continue
		}
		hasContainer[g] = true
		if tracked[g] != nil || finished[g] {
			continue // its goroutine is destroying it
		}
		r.log.Info("reconcile-task-destroyed", "task_guid", g, "reason", "a container of an earlier run")
		if err := r.garden.Destroy(ctx, c.Handle, r.cfg.GracePeriod); err != nil {
			r.log.Warn("container-destroy-failed", "task_guid", g, "error", err.Error())
		}
		if running[g] != nil {
			r.failTask(ctx, g, ReasonTaskRepRestarted)
		}
	}
	for g := range running {
		if hasContainer[g] || tracked[g] != nil || finished[g] {
			continue
		}
		r.failTask(ctx, g, ReasonContainerMissing)
	}
	for g, t := range tracked {
		if wasRunning[g] && running[g] == nil && t.getState() == TaskStateRunning {
			r.log.Info("reconcile-task-stopping", "task_guid", g, "reason", "the BBS no longer has it running on this cell")
			t.requestStop("")
		}
	}
	return nil
}

func (r *Rep) failTask(ctx context.Context, guid, reason string) {
	if err := r.bbs.CompleteTask(ctx, guid, r.cfg.CellID, true, reason, ""); err != nil {
		r.log.Warn("reconcile-task-fail-failed", "task_guid", guid, "reason", reason, "error", err.Error())
		return
	}
	r.log.Info("reconcile-task-failed", "task_guid", guid, "reason", reason)
}
