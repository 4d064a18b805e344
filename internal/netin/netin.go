// Package netin is minicf's twin of silk's cni-wrapper-plugin NetIn rules
// (and Garden's NetIn): per-container DNAT chains in a cell's nat table.
//
// Every container on a cell gets one chain, netin--<handle> cut to 28
// characters, jumped to from PREROUTING, holding one DNAT rule per port
// mapping, exactly as cf-networking writes them:
//
//	-A PREROUTING -j netin--<h>
//	-A netin--<h> -d <cell ip>/32 -p tcp -m tcp --dport <host port> -j DNAT --to-destination <container ip>:<container port>
//
// The rules are written the way kube-proxy's iptables proxier writes them,
// not the way the cni-wrapper-plugin does (one exec per rule): Render is a
// pure function from the desired state (and the current iptables-save text)
// to one iptables-restore --noflush batch, and Manager applies each change in
// one call. After a failed restore the Manager rebuilds everything from the
// desired state on its next call, and its periodic Sync notices chains or
// jumps that someone else flushed or deleted and repairs them.
//
// netin owns every nat chain whose name starts with "netin--" and every rule,
// anywhere in the nat table, that jumps to such a chain. It never declares,
// flushes or deletes any other chain, and never touches any other rule.
//
// Established connections survive the removal of their mapping through
// their conntrack binding, which matters most when a cell's last instance
// stops: its mapping is removed first, while its envoy sidecar still
// drains the connections it carries. With iptables-nft (nf_tables),
// conntrack runs in a namespace only while some rule needs it (a DNAT or
// MASQUERADE rule, a conntrack match); the nat table itself does not keep
// it on, as iptables-legacy's does. So removing a cell's last DNAT rule
// would switch conntrack off and reset every NATed flow still open. That
// is why netin keeps one chain of its own in every cell it manages,
// whatever containers it holds:
//
//	-A PREROUTING -j netin--+conntrack
//	-A netin--+conntrack -m comment --comment "..." -m conntrack --ctstate DNAT -j RETURN
//
// Its conntrack match is there only to hold conntrack on; matched or not,
// the rule just returns to PREROUTING, so it changes no packet. '+' is not
// a handle character, so no container's chain can take its name. It is
// declared, refilled, jumped to and repaired like a container's chain,
// but never deleted: it goes with the cell's namespace (TeardownCell,
// minicf down), as everything else in that nat table does. And a Remove
// that leaves a cell without containers rebuilds in full, so the batch
// that deletes the cell's last DNAT rule is also the one that makes sure
// the conntrack chain is in place, even if someone removed it by hand.
package netin

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ChainPrefix starts the name of every chain netin owns.
const ChainPrefix = "netin--"

// MaxChainNameLength is the longest chain name iptables accepts; CF cuts
// its per-container chain names to it.
const MaxChainNameLength = 28

// Mapping is one NetIn port mapping: traffic for the cell's HostPort is
// sent to ContainerIP:ContainerPort.
type Mapping struct {
	HostPort      uint32
	ContainerIP   string
	ContainerPort uint32
}

// Container is one container's NetIn state: its Garden handle (the
// instance guid in CF) and its port mappings.
type Container struct {
	Handle   string
	Mappings []Mapping
}

// ErrInvalid is wrapped by every validation error, so callers can tell a
// bad request from a failure to program the kernel.
var ErrInvalid = errors.New("netin: invalid")

// ChainName is the container's nat chain: "netin--" + handle, cut to 28
// characters as cf-networking does. A 36-character instance guid keeps its
// first 21 characters.
func ChainName(handle string) string {
	name := ChainPrefix + handle
	if len(name) > MaxChainNameLength {
		name = name[:MaxChainNameLength]
	}
	return name
}

// ConntrackChain is the chain netin keeps in every cell's nat table it
// manages, so that conntrack keeps running there (see the package doc).
// ChainName cannot return it: '+' is not allowed in a handle.
const ConntrackChain = ChainPrefix + "+conntrack"

// conntrackRule is ConntrackChain's one rule, as iptables-save prints it.
const conntrackRule = "-A " + ConntrackChain +
	` -m comment --comment "netin: keeps conntrack on so established DNAT flows outlive their rules"` +
	" -m conntrack --ctstate DNAT -j RETURN"

// IsChainName reports whether a nat chain belongs to netin.
func IsChainName(chain string) bool { return strings.HasPrefix(chain, ChainPrefix) }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// maxHandleLength bounds handles; only the first 21 characters reach the
// chain name, the rest is kept for messages.
const maxHandleLength = 256

func validHandleChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

// validateHandle refuses handles that could not be part of a chain name.
func validateHandle(h string) error {
	if h == "" {
		return invalidf("empty container handle")
	}
	if len(h) > maxHandleLength {
		return invalidf("container handle %.40q... is %d characters, more than %d", h, len(h), maxHandleLength)
	}
	for i, r := range h {
		if !validHandleChar(r) {
			return invalidf("container handle %q: character %q at %d is not allowed (only letters, digits, '-', '_' and '.')", h, r, i)
		}
	}
	return nil
}

// parseIPv4 accepts a plain dotted IPv4 address and returns its canonical
// text, which is how iptables-save prints it.
func parseIPv4(what, s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return "", invalidf("%s %q is not an IPv4 address", what, s)
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "", invalidf("%s %s cannot be a DNAT address", what, s)
	}
	return a.String(), nil
}

func validPort(p uint32) bool { return p >= 1 && p <= 65535 }

// validateContainer checks one container on its own.
func validateContainer(c Container) error {
	if err := validateHandle(c.Handle); err != nil {
		return err
	}
	seen := map[uint32]bool{}
	for i, m := range c.Mappings {
		if !validPort(m.HostPort) {
			return invalidf("container %q mapping %d: host port %d is not in 1..65535", c.Handle, i, m.HostPort)
		}
		if !validPort(m.ContainerPort) {
			return invalidf("container %q mapping %d: container port %d is not in 1..65535", c.Handle, i, m.ContainerPort)
		}
		if _, err := parseIPv4(fmt.Sprintf("container %q mapping %d: container ip", c.Handle, i), m.ContainerIP); err != nil {
			return err
		}
		if seen[m.HostPort] {
			return invalidf("container %q maps host port %d twice", c.Handle, m.HostPort)
		}
		seen[m.HostPort] = true
	}
	return nil
}

// validateSet checks a whole desired state: every container valid, no
// handle twice, no two handles sharing a (cut) chain name, no host port
// used by two containers.
func validateSet(cellIP string, desired []Container) (string, error) {
	ip, err := parseIPv4("cell ip", cellIP)
	if err != nil {
		return "", err
	}
	chains := map[string]string{}
	ports := map[uint32]string{}
	for _, c := range desired {
		if err := validateContainer(c); err != nil {
			return "", err
		}
		chain := ChainName(c.Handle)
		if other, ok := chains[chain]; ok {
			if other == c.Handle {
				return "", invalidf("container %q is listed twice", c.Handle)
			}
			return "", invalidf("containers %q and %q share chain %s (handles are cut to %d characters)",
				other, c.Handle, chain, MaxChainNameLength-len(ChainPrefix))
		}
		chains[chain] = c.Handle
		for _, m := range c.Mappings {
			if other, ok := ports[m.HostPort]; ok {
				return "", invalidf("host port %d is mapped by both %q and %q", m.HostPort, other, c.Handle)
			}
			ports[m.HostPort] = c.Handle
		}
	}
	return ip, nil
}

// dnatRule is one mapping's rule, byte for byte as iptables-save prints it
// (so Sync can compare text).
func dnatRule(chain, cellIP string, m Mapping) string {
	ip, _ := parseIPv4("", m.ContainerIP) // canonical form; validated before
	return "-A " + chain + " -d " + cellIP + "/32 -p tcp -m tcp --dport " + strconv.FormatUint(uint64(m.HostPort), 10) +
		" -j DNAT --to-destination " + ip + ":" + strconv.FormatUint(uint64(m.ContainerPort), 10)
}

// jumpRule is the container's PREROUTING jump, as iptables-save prints it.
func jumpRule(chain string) string { return "-A PREROUTING -j " + chain }

// Rules are c's rules as `iptables -t nat -S` (and iptables-save) print
// them: the PREROUTING jump, then one DNAT rule per mapping. cellIP and c
// must be valid (as Add checks them).
func Rules(cellIP string, c Container) []string {
	chain := ChainName(c.Handle)
	out := []string{jumpRule(chain)}
	for _, m := range c.Mappings {
		out = append(out, dnatRule(chain, cellIP, m))
	}
	return out
}

// Render returns the iptables-restore input (nat table only, meant for
// --noflush) that makes the cell's netin state equal to desired, given the
// current `iptables-save -t nat` text. It declares (and so flushes and
// refills) every desired chain, ConntrackChain among them whatever desired
// holds, adds a PREROUTING jump only for chains whose jump is missing,
// deletes every other rule that jumps to one of our chains (stale jumps,
// duplicates, jumps from other chains), and declares and then deletes
// (-X) every netin-- chain that is no longer desired.
// Chains that are not ours are never declared, flushed or deleted.
//
// Sections of current for other tables are ignored.
func Render(cellIP string, desired []Container, current string) ([]byte, error) {
	ip, err := validateSet(cellIP, desired)
	if err != nil {
		return nil, err
	}
	st, err := parseSave(current)
	if err != nil {
		return nil, err
	}
	a := analyze(st, ip, desired)

	var b bytes.Buffer
	b.WriteString("*nat\n")
	declared := slices.Clone(a.desiredChains)
	declared = append(declared, a.staleChains...)
	slices.Sort(declared)
	for _, chain := range declared {
		b.WriteString(":" + chain + " - [0:0]\n")
	}
	for _, chain := range a.desiredChains {
		for _, r := range a.wantRules[chain] {
			b.WriteString(r + "\n")
		}
	}
	for _, chain := range a.missingJumps {
		b.WriteString(jumpRule(chain) + "\n")
	}
	for _, r := range a.deleteRules {
		b.WriteString(r + "\n")
	}
	for _, chain := range a.staleChains {
		b.WriteString("-X " + chain + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.Bytes(), nil
}

// renderAdd is the steady-state batch for one added (or changed) container:
// its chain declared (flushed), its rules, and its jump when it has none.
func renderAdd(cellIP string, c Container, addJump bool) []byte {
	chain := ChainName(c.Handle)
	var b bytes.Buffer
	b.WriteString("*nat\n:" + chain + " - [0:0]\n")
	for _, m := range c.Mappings {
		b.WriteString(dnatRule(chain, cellIP, m) + "\n")
	}
	if addJump {
		b.WriteString(jumpRule(chain) + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// renderRemove is the steady-state batch for one removed container, in
// cni-wrapper-plugin's order: jump deleted, chain flushed and deleted.
func renderRemove(handle string) []byte {
	chain := ChainName(handle)
	return []byte("*nat\n:" + chain + " - [0:0]\n-D PREROUTING -j " + chain + "\n-X " + chain + "\nCOMMIT\n")
}

func sortedContainers(cs []Container) []Container {
	out := slices.Clone(cs)
	slices.SortFunc(out, func(a, b Container) int { return strings.Compare(ChainName(a.Handle), ChainName(b.Handle)) })
	return out
}

// analysis compares the parsed nat table with the desired state.
type analysis struct {
	desiredChains []string            // ConntrackChain and the containers' chains, sorted
	wantRules     map[string][]string // chain -> rules as iptables-save prints them
	missingJumps  []string            // desired chains without their PREROUTING jump, sorted
	deleteRules   []string            // "-D ..." for every other rule jumping to one of our chains, in save order
	staleChains   []string            // our chains that are not desired, sorted
	drift         []string            // human-readable differences, empty when in sync
}

func analyze(st *natTable, cellIP string, want []Container) analysis {
	a := analysis{wantRules: map[string][]string{ConntrackChain: {conntrackRule}}}
	for _, c := range want {
		chain := ChainName(c.Handle)
		rules := make([]string, 0, len(c.Mappings))
		for _, m := range c.Mappings {
			rules = append(rules, dnatRule(chain, cellIP, m))
		}
		a.wantRules[chain] = rules
	}
	desired := map[string]bool{}
	for chain := range a.wantRules {
		desired[chain] = true
		a.desiredChains = append(a.desiredChains, chain)
	}
	slices.Sort(a.desiredChains)
	for _, chain := range a.desiredChains {
		rules := a.wantRules[chain]
		if !st.exists(chain) {
			a.drift = append(a.drift, missingChain(chain))
		} else if !slices.Equal(st.rules[chain], rules) {
			a.drift = append(a.drift, fmt.Sprintf("chain %s has %d rules that differ from the %d wanted", chain, len(st.rules[chain]), len(rules)))
		}
	}
	for _, chain := range st.order {
		if IsChainName(chain) && !desired[chain] {
			a.staleChains = append(a.staleChains, chain)
			a.drift = append(a.drift, "chain "+chain+" is not desired")
		}
	}
	slices.Sort(a.staleChains)

	jumped := map[string]bool{}
	for _, chain := range st.order {
		if IsChainName(chain) {
			continue // our own chains are declared, so flushed, below
		}
		for _, r := range st.rules[chain] {
			target := ruleTarget(r)
			if !IsChainName(target) {
				continue
			}
			if chain == "PREROUTING" && r == jumpRule(target) && desired[target] && !jumped[target] {
				jumped[target] = true
				continue
			}
			a.deleteRules = append(a.deleteRules, "-D"+strings.TrimPrefix(r, "-A"))
			a.drift = append(a.drift, "unexpected rule: "+r)
		}
	}
	for _, chain := range a.desiredChains {
		if !jumped[chain] {
			a.missingJumps = append(a.missingJumps, chain)
			a.drift = append(a.drift, missingJump(chain))
		}
	}
	return a
}

// missingChain and missingJump are the drift analyze reports for a desired
// chain that does not exist and one that PREROUTING does not jump to.
func missingChain(chain string) string { return "chain " + chain + " is missing" }
func missingJump(chain string) string  { return "jump to " + chain + " is missing from PREROUTING" }

// ruleTarget returns the chain or target a saved rule jumps (-j) or goes
// (-g) to, or "".
func ruleTarget(rule string) string {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "-j", "--jump", "-g", "--goto":
			return f[i+1]
		}
	}
	return ""
}

// natTable is the nat section of an iptables-save dump.
type natTable struct {
	order []string            // chains in save order
	rules map[string][]string // chain -> "-A chain ..." lines
}

func (t *natTable) exists(chain string) bool { _, ok := t.rules[chain]; return ok }

// parseSave reads the *nat section of iptables-save output. A dump without
// a nat section (the table does not exist yet) is an empty table.
func parseSave(text string) (*natTable, error) {
	t := &natTable{rules: map[string][]string{}}
	inNat := false
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			inNat = line == "*nat"
		case !inNat:
		case line == "COMMIT":
			inNat = false
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) == 0 {
				return nil, fmt.Errorf("netin: iptables-save line %d: empty chain declaration", i+1)
			}
			if !t.exists(f[0]) {
				t.order = append(t.order, f[0])
				t.rules[f[0]] = nil
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || !t.exists(f[1]) {
				return nil, fmt.Errorf("netin: iptables-save line %d: rule for undeclared chain: %s", i+1, line)
			}
			t.rules[f[1]] = append(t.rules[f[1]], line)
		default:
			return nil, fmt.Errorf("netin: iptables-save line %d: unexpected %q", i+1, line)
		}
	}
	return t, nil
}
