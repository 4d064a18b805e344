package rep

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/minicf/minicf/internal/bbs"
	"github.com/minicf/minicf/internal/garden"
	"github.com/minicf/minicf/internal/identity"
	"github.com/minicf/minicf/internal/mbus"
)

// Instance states, as InstanceSummary.State reports them.
const (
	StateReserved = "reserved" // accepted, not yet claimed
	StateStarting = "starting" // claimed: container, processes, start checks
	StateRunning  = "running"
	StateStopping = "stopping"
)

// Container properties the rep keeps with each container, so that a
// restarted rep recognises it.
const (
	PropOwner          = "owner"
	PropProcessGUID    = "process_guid"
	PropIndex          = "index"
	PropDomain         = "domain"
	PropInstanceGUID   = "instance_guid"
	PropCellID         = "cell_id"
	PropLogGUID        = "log_guid"
	PropSourceType     = "source_type"
	PropMemoryMB       = "memory_mb"
	PropDiskMB         = "disk_mb"
	PropRouteIntegrity = "route_integrity"
	PropAppPorts       = "app_ports"   // JSON list
	PropProxyPorts     = "proxy_ports" // JSON map app port -> proxy port
	PropAdminPort      = "admin_port"
	PropCertOU         = "certificate_ou" // JSON list
	OwnerRep           = "minicf-rep"
	// Process IDs (and log names) in the container.
	ProcessApp     = "app"
	ProcessSidecar = "envoy"
)

type instance struct {
	key      bbs.ActualLRPKey
	ik       bbs.ActualLRPInstanceKey
	resource bbs.Resource

	mu     sync.Mutex
	state  string
	remove bool // the stop came from the BBS: remove the ActualLRP after
	stopCh chan struct{}
	once   sync.Once
	done   chan struct{}
}

func newInstance(key bbs.ActualLRPKey, ik bbs.ActualLRPInstanceKey, res bbs.Resource) *instance {
	return &instance{key: key, ik: ik, resource: res, state: StateReserved,
		stopCh: make(chan struct{}), done: make(chan struct{})}
}

func (in *instance) getState() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state
}

func (in *instance) setState(s string) {
	in.mu.Lock()
	in.state = s
	in.mu.Unlock()
}

// requestStop asks the instance to stop; remove says whether its ActualLRP
// is then removed (a BBS stop) or already gone (reconcile).
func (in *instance) requestStop(remove bool) {
	in.mu.Lock()
	if remove {
		in.remove = true
	}
	in.mu.Unlock()
	in.once.Do(func() { close(in.stopCh) })
}

func (in *instance) stopRequested() bool {
	select {
	case <-in.stopCh:
		return true
	default:
		return false
	}
}

func (in *instance) shouldRemove() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.remove
}

func sortSummaries(s []InstanceSummary) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].ProcessGUID != s[j].ProcessGUID {
			return s[i].ProcessGUID < s[j].ProcessGUID
		}
		return s[i].Index < s[j].Index
	})
}

// lrpContainer is an instance's container and what runs in it.
type lrpContainer struct {
	info       garden.ContainerInfo
	plan       portPlan
	ni         bbs.ActualLRPNetInfo
	app        garden.Process
	sidecar    garden.Process
	sourceType string
	logGUID    string
	ou         []string
	certFile   string
	keyFile    string
	leaf       *x509.Certificate
}

type exit struct {
	process string
	status  int
	err     error
}

// watch reports each process's exit on a channel.
func (c *lrpContainer) watch() <-chan exit {
	ch := make(chan exit, 2)
	for _, p := range []garden.Process{c.app, c.sidecar} {
		if p == nil {
			continue
		}
		go func(p garden.Process) {
			status, err := p.Wait()
			ch <- exit{process: p.ID(), status: status, err: err}
		}(p)
	}
	return ch
}

func (r *Rep) instanceLog(in *instance) *slog.Logger {
	return r.log.With("process_guid", in.key.ProcessGUID, "index", in.key.Index, "instance_guid", in.ik.InstanceGUID)
}

// bbsCtx bounds a BBS call made on the instance's behalf; it outlives Stop,
// so that a stop in progress can still report.
func (r *Rep) bbsCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.ctx), 30*time.Second)
}

// cellLog sends a CELL message to the app's logs, as Diego's executor does.
func (r *Rep) cellLog(logGUID string, index int32, msg string) {
	if r.cfg.AppLogs == nil || logGUID == "" {
		return
	}
	r.cfg.AppLogs(mbus.AppLog{AppID: logGUID, SourceType: "CELL", InstanceIndex: strconv.Itoa(int(index)),
		TimestampNs: time.Now().UnixNano(), Message: msg})
}

// runNew runs an instance the auctioneer gave the cell: claim, create,
// start, monitor.
func (r *Rep) runNew(in *instance) {
	defer r.insts.Done()
	defer r.finish(in)
	log := r.instanceLog(in)
	ctx, cancel := r.bbsCtx()
	err := r.bbs.ClaimActualLRP(ctx, in.key, in.ik)
	cancel()
	if err != nil {
		log.Warn("instance-claim-failed", "error", err.Error())
		return
	}
	in.setState(StateStarting)
	log.Info("instance-claimed")
	if in.stopRequested() || r.ctx.Err() != nil {
		r.abandonClaimed(in, log)
		return
	}
	ctx, cancel = r.bbsCtx()
	desired, err := r.bbs.DesiredLRPByProcessGUID(ctx, in.key.ProcessGUID)
	cancel()
	if err != nil {
		if errors.Is(err, bbs.ErrResourceNotFound) {
			log.Info("instance-no-longer-desired")
			r.removeActual(in, log)
			return
		}
		r.crash(in, log, "", fmt.Sprintf("cannot fetch the DesiredLRP: %v", err))
		return
	}
	c, err := r.createContainer(in, desired, log)
	if err != nil {
		if in.stopRequested() {
			r.removeActual(in, log)
			return
		}
		if r.ctx.Err() != nil {
			return
		}
		r.crash(in, log, desired.LogGUID, err.Error())
		return
	}
	r.monitor(in, c, desired, log)
}

// abandonClaimed handles a stop that came before the container: the claim
// is given back by removing the ActualLRP (when the BBS asked).
func (r *Rep) abandonClaimed(in *instance, log *slog.Logger) {
	if in.stopRequested() && in.shouldRemove() {
		r.removeActual(in, log)
	}
}

func (r *Rep) removeActual(in *instance, log *slog.Logger) {
	ctx, cancel := r.bbsCtx()
	defer cancel()
	ik := in.ik
	if err := r.bbs.RemoveActualLRP(ctx, in.key, &ik); err != nil {
		log.Warn("instance-remove-failed", "error", err.Error())
		return
	}
	log.Info("instance-removed")
}

func (r *Rep) crash(in *instance, log *slog.Logger, logGUID, reason string) {
	ctx, cancel := r.bbsCtx()
	defer cancel()
	r.cellLog(logGUID, in.key.Index, fmt.Sprintf("Cell %s reports instance %s crashed: %s", r.cfg.CellID, in.ik.InstanceGUID, reason))
	if err := r.bbs.CrashActualLRP(ctx, in.key, in.ik, reason); err != nil {
		log.Warn("instance-crash-report-failed", "reason", reason, "error", err.Error())
		return
	}
	log.Info("instance-crashed", "reason", reason)
}

// destroy ends the container (SIGTERM, SIGKILL after the grace period).
func (r *Rep) destroy(in *instance, log *slog.Logger, logGUID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), r.cfg.GracePeriod+30*time.Second)
	defer cancel()
	r.cellLog(logGUID, in.key.Index, fmt.Sprintf("Cell %s destroying container for instance %s", r.cfg.CellID, in.ik.InstanceGUID))
	if err := r.garden.Destroy(ctx, in.ik.InstanceGUID, r.cfg.GracePeriod); err != nil {
		log.Error("container-destroy-failed", "error", err.Error())
		return
	}
	r.cellLog(logGUID, in.key.Index, fmt.Sprintf("Cell %s successfully destroyed container for instance %s", r.cfg.CellID, in.ik.InstanceGUID))
	log.Info("container-destroyed")
}

// createContainer makes the container, writes the identity and starts the
// sidecar and the app. On error the container is gone.
func (r *Rep) createContainer(in *instance, d *bbs.DesiredLRP, log *slog.Logger) (c *lrpContainer, err error) {
	ri := r.cfg.routeIntegrity()
	plan, err := planPorts(d.Ports, ri)
	if err != nil {
		return nil, fmt.Errorf("cannot plan the container's ports: %w", err)
	}
	var ou []string
	if d.CertificateProperties != nil {
		ou = d.CertificateProperties.OrganizationalUnit
	}
	appPorts, _ := json.Marshal(plan.appPorts)
	proxyPorts, _ := json.Marshal(plan.proxyPorts)
	ouJSON, _ := json.Marshal(ou)
	props := map[string]string{
		PropOwner:          OwnerRep,
		PropProcessGUID:    in.key.ProcessGUID,
		PropIndex:          strconv.Itoa(int(in.key.Index)),
		PropDomain:         in.key.Domain,
		PropInstanceGUID:   in.ik.InstanceGUID,
		PropCellID:         in.ik.CellID,
		PropLogGUID:        d.LogGUID,
		PropSourceType:     sourceType(d),
		PropMemoryMB:       strconv.Itoa(int(in.resource.MemoryMB)),
		PropDiskMB:         strconv.Itoa(int(in.resource.DiskMB)),
		PropRouteIntegrity: strconv.FormatBool(ri),
		PropAppPorts:       string(appPorts),
		PropProxyPorts:     string(proxyPorts),
		PropAdminPort:      strconv.Itoa(int(plan.adminPort)),
		PropCertOU:         string(ouJSON),
	}
	// The container's memory limit is Diego's: the LRP's memory plus the
	// envoy's additional allocation when the sidecar runs.
	spec := garden.ContainerSpec{Handle: in.ik.InstanceGUID, MemoryMB: d.MemoryMB + r.cfg.ProxyMemoryMB, DiskMB: d.DiskMB,
		Properties: props}
	spec.NetIn, spec.LocalPorts = plan.containerPorts(r.namespaced())
	setupTo := ""
	if d.Setup != nil {
		spec.Source = d.Setup.From
		setupTo = d.Setup.To
	}
	r.cellLog(d.LogGUID, in.key.Index, fmt.Sprintf("Cell %s creating container for instance %s", r.cfg.CellID, in.ik.InstanceGUID))
	info, err := r.garden.Create(r.ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("cannot create the container: %w", err)
	}
	r.cellLog(d.LogGUID, in.key.Index, fmt.Sprintf("Cell %s successfully created container for instance %s", r.cfg.CellID, in.ik.InstanceGUID))
	log.Info("container-created", "dir", info.Dir, "ports", portsString(info.MappedPorts))
	c = &lrpContainer{info: info, plan: plan, ni: plan.netInfo(info), sourceType: sourceType(d), logGUID: d.LogGUID, ou: ou,
		certFile: filepath.Join(info.Dir, CredentialsDir, "instance.crt"),
		keyFile:  filepath.Join(info.Dir, CredentialsDir, "instance.key")}
	defer func() {
		if err != nil {
			r.destroy(in, log, d.LogGUID)
		}
	}()
	if err := r.writeIdentity(c, in.ik.InstanceGUID); err != nil {
		return nil, err
	}
	if ri && len(plan.appPorts) > 0 {
		args := append(append([]string(nil), r.cfg.SidecarCommand[1:]...),
			plan.sidecarArgs(info, c.certFile, c.keyFile, r.cfg.ProxyClientCAFile)...)
		c.sidecar, err = r.garden.Run(r.ctx, info.Handle, garden.ProcessSpec{
			Path: r.cfg.SidecarCommand[0], Args: args, LogName: ProcessSidecar,
			Env: []string{"HOME=" + filepath.Join(info.Dir, "tmp"), "TMPDIR=" + filepath.Join(info.Dir, "tmp")},
		})
		if err != nil {
			return nil, fmt.Errorf("cannot start the envoy sidecar: %w", err)
		}
	}
	if d.Action == nil || d.Action.Path == "" {
		return nil, errors.New("the DesiredLRP has no action to run")
	}
	// The action, or the launcher in its place (lifecycle.go).
	appPath, appArgs, err := r.actionCommand(info.Dir, d.Action, setupTo)
	if err != nil {
		return nil, err
	}
	ps := garden.ProcessSpec{
		Path:    appPath,
		Args:    appArgs,
		Env:     appEnv(d, in.key, in.ik.InstanceGUID, info, plan, c.ni, c.certFile, c.keyFile),
		LogName: ProcessApp,
	}
	if dir, rel := containerPath(d.Action.Dir, setupTo); rel {
		ps.Dir = dir
	} else {
		ps.Dir = d.Action.Dir
	}
	if r.cfg.AppLogs != nil && d.LogGUID != "" {
		idx := strconv.Itoa(int(in.key.Index))
		emit := func(line string) {
			r.cfg.AppLogs(mbus.AppLog{AppID: d.LogGUID, SourceType: c.sourceType, InstanceIndex: idx,
				TimestampNs: time.Now().UnixNano(), Message: line})
		}
		ps.Stdout = &lineWriter{emit: emit}
		ps.Stderr = &lineWriter{emit: emit}
	}
	c.app, err = r.garden.Run(r.ctx, info.Handle, ps)
	if err != nil {
		return nil, fmt.Errorf("cannot start the app: %w", err)
	}
	return c, nil
}

func portsString(pm []garden.PortMapping) string {
	b, _ := json.Marshal(pm)
	return string(b)
}

// writeIdentity issues the instance identity and writes it into the
// container (leaf then CA, and the key).
func (r *Rep) writeIdentity(c *lrpContainer, guid string) error {
	if r.ca == nil {
		return nil
	}
	var ips []net.IP
	if ip := net.ParseIP(c.info.ContainerIP); ip != nil {
		ips = append(ips, ip)
	} else if ip := net.ParseIP(c.info.ExternalIP); ip != nil {
		ips = append(ips, ip)
	}
	cred, err := r.ca.IssueInstance(identity.InstanceRequest{InstanceGUID: guid, IPs: ips,
		OrganizationalUnit: c.ou, Validity: r.cfg.InstanceCertValidity})
	if err != nil {
		return fmt.Errorf("cannot issue the instance identity: %w", err)
	}
	if _, _, err := identity.WriteCredential(filepath.Dir(c.certFile), "instance", cred); err != nil {
		return fmt.Errorf("cannot write the instance identity: %w", err)
	}
	c.leaf = cred.Leaf
	return nil
}

// writeInvalidIdentity replaces the sidecar's credentials with a
// self-signed certificate no router trusts, as Diego's credential manager
// does before a stop: routers fail the handshake and move to other
// instances while the app still runs.
func writeInvalidIdentity(c *lrpContainer, guid string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "invalid-" + guid},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	cred := &identity.Credential{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	_, _, err = identity.WriteCredential(filepath.Dir(c.certFile), "instance", cred)
	return err
}

// checkSpec is one start check: a TCP connect or an HTTP GET.
type checkSpec struct {
	name    string
	http    bool
	port    uint32 // the port to dial (the bind port)
	path    string
	timeout time.Duration
}

func (r *Rep) checks(c *lrpContainer, d *bbs.DesiredLRP) []checkSpec {
	var out []checkSpec
	switch {
	case d != nil && d.CheckDefinition != nil:
		for _, ch := range d.CheckDefinition.Checks {
			switch {
			case ch.TCPCheck != nil:
				out = append(out, checkSpec{name: "port " + strconv.Itoa(int(ch.TCPCheck.Port)),
					port: bindPort(c.info, ch.TCPCheck.Port), timeout: msOr(ch.TCPCheck.ConnectTimeoutMs, time.Second)})
			case ch.HTTPCheck != nil:
				path := ch.HTTPCheck.Path
				if path == "" {
					path = "/"
				}
				out = append(out, checkSpec{name: "port " + strconv.Itoa(int(ch.HTTPCheck.Port)), http: true,
					port: bindPort(c.info, ch.HTTPCheck.Port), path: path, timeout: msOr(ch.HTTPCheck.RequestTimeoutMs, time.Second)})
			}
		}
	case len(c.plan.appPorts) > 0:
		p := c.plan.appPorts[0]
		out = append(out, checkSpec{name: "port " + strconv.Itoa(int(p)), port: bindPort(c.info, p), timeout: time.Second})
	}
	for _, app := range c.plan.appPorts {
		if proxy, ok := c.plan.proxyPorts[app]; ok && c.sidecar != nil {
			out = append(out, checkSpec{name: "proxy port " + strconv.Itoa(int(proxy)), port: bindPort(c.info, proxy), timeout: time.Second})
		}
	}
	return out
}

func msOr(ms uint64, def time.Duration) time.Duration {
	if ms == 0 {
		return def
	}
	return time.Duration(ms) * time.Millisecond
}

// monitor runs the start checks, reports RUNNING, and then watches the
// processes, the stop channel and the certificate's renewal.
func (r *Rep) monitor(in *instance, c *lrpContainer, d *bbs.DesiredLRP, log *slog.Logger) {
	exits := c.watch()
	starting := in.getState() != StateRunning
	var checks []checkSpec
	var deadline time.Time
	var timeout time.Duration
	var health *time.Ticker
	var healthC <-chan time.Time
	if starting {
		checks = r.checks(c, d)
		timeout = r.cfg.DefaultStartTimeout
		if d != nil && d.StartTimeoutMs > 0 {
			timeout = time.Duration(d.StartTimeoutMs) * time.Millisecond
		}
		deadline = time.Now().Add(timeout)
		r.cellLog(c.logGUID, in.key.Index, "Starting health monitoring of container")
		health = time.NewTicker(r.cfg.HealthCheckInterval)
		defer health.Stop()
		healthC = health.C
	}
	renew := time.NewTimer(r.renewIn(c))
	defer renew.Stop()
	startedAt := time.Now()
	envoyTraced := !starting
	for {
		select {
		case <-r.ctx.Done():
			return // leave it running: a restarted rep adopts it
		case <-in.stopCh:
			r.stopContainer(in, c, log)
			return
		case e := <-exits:
			if in.stopRequested() {
				r.stopContainer(in, c, log)
				return
			}
			log.Info("instance-process-exited", "process", e.process, "status", e.status)
			r.crash(in, log, c.logGUID, exitReason(c, e))
			in.setState(StateStopping)
			r.destroy(in, log, c.logGUID)
			return
		case <-healthC:
			if !envoyTraced {
				envoyTraced = r.traceEnvoy(in, c)
			}
			if err := runChecks(r.ctx, c.info.ContainerIP, checks); err != nil {
				if time.Now().After(deadline) {
					r.crash(in, log, c.logGUID, fmt.Sprintf("Instance never healthy after %v: %v", timeout, err))
					in.setState(StateStopping)
					r.destroy(in, log, c.logGUID)
					return
				}
				continue
			}
			health.Stop()
			healthC = nil
			if !envoyTraced { // it came up between its probe and the checks
				envoyTraced = r.traceEnvoy(in, c)
			}
			ctx, cancel := r.bbsCtx()
			err := r.bbs.StartActualLRP(ctx, in.key, in.ik, c.ni, true)
			cancel()
			if err != nil {
				// The BBS no longer wants it from us (removed, or claimed elsewhere).
				log.Warn("instance-start-report-failed", "error", err.Error())
				in.setState(StateStopping)
				r.destroy(in, log, c.logGUID)
				return
			}
			in.setState(StateRunning)
			r.cellLog(c.logGUID, in.key.Index, "Container became healthy")
			log.Info("instance-started", "address", c.ni.Address, "ports", portMappingsString(c.ni.Ports),
				"duration", time.Since(startedAt).String())
		case <-renew.C:
			if err := r.writeIdentity(c, in.ik.InstanceGUID); err != nil {
				log.Warn("instance-identity-renewal-failed", "error", err.Error())
				renew.Reset(time.Minute)
				continue
			}
			log.Info("instance-identity-renewed", "not_after", c.leaf.NotAfter.UTC())
			renew.Reset(r.renewIn(c))
		}
	}
}

func portMappingsString(pm []bbs.PortMapping) string {
	b, _ := json.Marshal(pm)
	return string(b)
}

func (r *Rep) renewIn(c *lrpContainer) time.Duration {
	if c.leaf == nil {
		return 24 * 365 * time.Hour // no identity (no CA): nothing to renew
	}
	return max(time.Until(identity.RenewAt(c.leaf)), time.Second)
}

func exitReason(c *lrpContainer, e exit) string {
	source := c.sourceType
	if e.process == ProcessSidecar {
		source = "PROXY"
	}
	if errors.Is(e.err, garden.ErrExitStatusUnknown) {
		return source + ": Exited (its exit status is unknown: it was started before the rep restarted)"
	}
	if e.err != nil {
		return fmt.Sprintf("%s: Exited: %v", source, e.err)
	}
	return fmt.Sprintf("%s: Exited with status %d", source, e.status)
}

// stopContainer is Diego's graceful stop: invalidate the sidecar's
// credentials, wait for the proxy to reload, then SIGTERM everything
// (SIGKILL after the grace period), destroy the container and remove the
// ActualLRP when the BBS asked for the stop.
func (r *Rep) stopContainer(in *instance, c *lrpContainer, log *slog.Logger) {
	in.setState(StateStopping)
	log.Info("instance-stopping", "remove", in.shouldRemove())
	r.cellLog(c.logGUID, in.key.Index, fmt.Sprintf("Cell %s stopping instance %s", r.cfg.CellID, in.ik.InstanceGUID))
	if c.sidecar != nil {
		if err := writeInvalidIdentity(c, in.ik.InstanceGUID); err != nil {
			log.Warn("instance-identity-invalidation-failed", "error", err.Error())
		} else if r.cfg.ProxyReloadWait > 0 && !r.fastStop.Load() {
			t := time.NewTimer(r.cfg.ProxyReloadWait)
			<-t.C
		}
	}
	r.destroy(in, log, c.logGUID)
	if in.shouldRemove() {
		r.removeActual(in, log)
	}
}

// runChecks runs every check once; the first failure is the error.
func runChecks(ctx context.Context, ip string, checks []checkSpec) error {
	for _, ch := range checks {
		addr := net.JoinHostPort(ip, strconv.Itoa(int(ch.port)))
		if !ch.http {
			d := net.Dialer{Timeout: ch.timeout}
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("Failed to make TCP connection to %s: %v", ch.name, unwrapDial(err))
			}
			conn.Close()
			continue
		}
		if err := httpCheck(ctx, addr, ch); err != nil {
			return err
		}
	}
	return nil
}

func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var se *os.SyscallError
		if errors.As(op.Err, &se) {
			return se.Err
		}
		return op.Err
	}
	return err
}
