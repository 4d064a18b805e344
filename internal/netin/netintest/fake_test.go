package netintest

import (
	"context"
	"strings"
	"testing"
)

const builtins = ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"

// Each case starts from setup and restores batch; the outcomes are the
// ones iptables-restore v1.8.9 (nf_tables) gives with --noflush -T nat
// (netin's namespace tests compare the fake with the kernel too).
func TestFakeRestoreSemantics(t *testing.T) {
	setup := "*nat\n:netin--a - [0:0]\n:OTHER - [0:0]\n" +
		"-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN\n" +
		"-A PREROUTING -j netin--a\n" +
		"-A netin--a -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080\n" +
		"-A OTHER -j RETURN\nCOMMIT\n"
	setupDump := "*nat\n" + builtins + ":OTHER - [0:0]\n:netin--a - [0:0]\n" +
		"-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN\n" +
		"-A PREROUTING -j netin--a\n" +
		"-A OTHER -j RETURN\n" +
		"-A netin--a -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080\n" +
		"COMMIT\n"
	for _, tc := range []struct {
		name    string
		batch   string
		wantErr string // "" = success
		want    string // dump after; "" = unchanged
	}{
		{name: "declaring a user chain flushes it, a built-in one keeps its rules",
			batch: "*nat\n:PREROUTING ACCEPT [0:0]\n:netin--a - [0:0]\nCOMMIT\n",
			want: "*nat\n" + builtins + ":OTHER - [0:0]\n:netin--a - [0:0]\n" +
				"-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN\n-A PREROUTING -j netin--a\n-A OTHER -j RETURN\nCOMMIT\n"},
		{name: "a bad line fails the whole batch",
			batch:   "*nat\n:netin--b - [0:0]\n-A netin--b -j DNAT --to-destination 10.244.1.3:8080\nCOMMIT\n",
			wantErr: "line 3: Need TCP, UDP"},
		{name: "unknown option",
			batch:   "*nat\n-F netin--a\n-A netin--a -p tcp --bogus 1 -j ACCEPT\nCOMMIT\n",
			wantErr: `line 3: unknown option "--bogus"`},
		{name: "deleting a missing rule",
			batch:   "*nat\n:netin--b - [0:0]\n-D PREROUTING -j netin--b\nCOMMIT\n",
			wantErr: "line 3: Bad rule"},
		{name: "jump to a missing chain",
			batch:   "*nat\n-A PREROUTING -j netin--zzz\nCOMMIT\n",
			wantErr: "Chain 'netin--zzz' does not exist"},
		{name: "deleting a referenced chain",
			batch:   "*nat\n-F netin--a\n-X netin--a\nCOMMIT\n",
			wantErr: "Device or resource busy"},
		{name: "deleting a chain with rules",
			batch:   "*nat\n-X OTHER\nCOMMIT\n",
			wantErr: "Device or resource busy"},
		{name: "a name over 28 characters",
			batch:   "*nat\n:netin--0123456789012345678901 - [0:0]\nCOMMIT\n",
			wantErr: "too long"},
		{name: "DROP in nat",
			batch:   "*nat\n-A PREROUTING -d 10.244.9.1/32 -j DROP\nCOMMIT\n",
			wantErr: "DROP is therefore inhibited"},
		{name: "no COMMIT",
			batch:   "*nat\n:netin--b - [0:0]\n",
			wantErr: "line 3: COMMIT expected"},
		{name: "other tables are read, not applied (-T nat)",
			batch: "*filter\n:netin--f - [0:0]\n-A FORWARD -j netin--f\nCOMMIT\n*nat\nCOMMIT\n",
			want:  setupDump},
		{name: "cni cleanup order: declare (flush), unjump, delete",
			batch: "*nat\n:netin--a - [0:0]\n-D PREROUTING -j netin--a\n-X netin--a\nCOMMIT\n",
			want: "*nat\n" + builtins + ":OTHER - [0:0]\n" +
				"-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN\n-A OTHER -j RETURN\nCOMMIT\n"},
		{name: "insert, quoted comment, implicit -m tcp, delete by number",
			batch: "*nat\n-I PREROUTING 1 -s 10.244.9.8 -m comment --comment \"two words\" -j RETURN\n" +
				"-A netin--a -p tcp --dport 5 -j DNAT --to-destination 10.244.1.1\n-D netin--a 1\nCOMMIT\n",
			want: "*nat\n" + builtins + ":OTHER - [0:0]\n:netin--a - [0:0]\n" +
				"-A PREROUTING -s 10.244.9.8/32 -m comment --comment \"two words\" -j RETURN\n" +
				"-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN\n-A PREROUTING -j netin--a\n" +
				"-A OTHER -j RETURN\n-A netin--a -p tcp -m tcp --dport 5 -j DNAT --to-destination 10.244.1.1\nCOMMIT\n"},
		{name: "conntrack states: any case and order in, iptables-save's order out",
			batch: "*nat\n-A OTHER -m conntrack --ctstate dnat,Established,NEW,untracked,SNAT,related,INVALID -j RETURN\nCOMMIT\n",
			want: "*nat\n" + builtins + ":OTHER - [0:0]\n:netin--a - [0:0]\n" +
				"-A PREROUTING -s 10.244.9.9/32 -m comment --comment foreign -j RETURN\n-A PREROUTING -j netin--a\n" +
				"-A OTHER -j RETURN\n-A OTHER -m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT -j RETURN\n" +
				"-A netin--a -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080\nCOMMIT\n"},
		{name: "bad conntrack state",
			batch:   "*nat\n-A OTHER -m conntrack --ctstate BOGUS -j RETURN\nCOMMIT\n",
			wantErr: `Bad ctstate "BOGUS"`},
		{name: "conntrack without --ctstate",
			batch:   "*nat\n-A OTHER -m conntrack -j RETURN\nCOMMIT\n",
			wantErr: "only --ctstate"},
		{name: "flush the whole table",
			batch: "*nat\n-F\nCOMMIT\n",
			want:  "*nat\n" + builtins + ":OTHER - [0:0]\n:netin--a - [0:0]\nCOMMIT\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := New()
			if err := f.Restore(ctx, []byte(setup)); err != nil {
				t.Fatal(err)
			}
			if got := f.Dump(); got != setupDump {
				t.Fatalf("setup dump:\n%s", got)
			}
			err := f.Restore(ctx, []byte(tc.batch))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("restore: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("restore error = %v, want one containing %q", err, tc.wantErr)
			}
			want := tc.want
			if want == "" {
				want = setupDump
			}
			if got := f.Dump(); got != want {
				t.Fatalf("dump differs\n--- want\n%s--- got\n%s", want, got)
			}
		})
	}
}

func TestFakeTrace(t *testing.T) {
	f := New()
	err := f.Apply(
		"-N netin--a", "-N netin--b", "-N G", "-N CT",
		"-A PREROUTING -j CT",
		"-A PREROUTING -s 10.244.9.9/32 -j RETURN",
		"-A PREROUTING -d 10.244.9.1/32 -j ACCEPT",
		"-A PREROUTING -j netin--a",
		"-A PREROUTING -g G",
		"-A PREROUTING -j netin--b",
		"-A netin--a -d 10.244.0.11/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.244.1.2:8080",
		"-A netin--a -d 10.244.0.0/24 -p tcp -m tcp --dport 61002 -j DNAT --to-destination 10.244.1.2",
		"-A G -d 10.244.0.11/32 -p tcp --dport 61003 -j RETURN",
		"-A netin--b -d 10.244.0.11/32 -p tcp -m tcp --dport 61003 -j DNAT --to-destination 10.244.1.3:8080",
		// A traced packet is a new connection: only the NEW rule matches.
		"-A CT -m conntrack --ctstate DNAT -j ACCEPT",
		"-A CT -d 10.244.0.11/32 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		"-A CT -d 10.244.0.13/32 -m conntrack --ctstate NEW -j ACCEPT",
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src, dst string
		port     uint32
		want     string
	}{
		{"10.244.0.1", "10.244.0.11", 61001, "10.244.1.2:8080"},
		{"10.244.0.1", "10.244.0.12", 61002, "10.244.1.2:61002"}, // no port: keeps the packet's
		{"10.244.9.9", "10.244.0.11", 61001, "none"},             // RETURN from a built-in chain: policy
		{"10.244.0.1", "10.244.9.1", 80, "ACCEPT"},
		{"10.244.0.1", "10.244.0.11", 61003, "none"}, // the goto's RETURN ends PREROUTING too
		{"10.244.0.1", "10.244.0.11", 61004, "none"},
		{"10.244.0.1", "10.244.0.13", 61004, "ACCEPT"},
	} {
		if got := f.Trace(tc.src, tc.dst, tc.port); got != tc.want {
			t.Errorf("Trace(%s -> %s:%d) = %q, want %q", tc.src, tc.dst, tc.port, got, tc.want)
		}
	}
}

func TestFakeFailNextAndCounts(t *testing.T) {
	ctx := context.Background()
	f := New()
	f.FailNextRestore(context.DeadlineExceeded)
	if err := f.Restore(ctx, []byte("*nat\n:netin--a - [0:0]\nCOMMIT\n")); err != context.DeadlineExceeded {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(f.Dump(), "netin--a") {
		t.Fatal("a failed restore changed the table")
	}
	if err := f.Restore(ctx, []byte("*nat\n:netin--a - [0:0]\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	if len(f.Restores()) != 2 {
		t.Fatalf("Restores() has %d entries", len(f.Restores()))
	}
	s, err := f.Save(ctx)
	if err != nil || !strings.HasPrefix(s, "# Generated") || !strings.Contains(s, ":netin--a - [0:0]") || f.Saves() != 1 {
		t.Fatalf("Save = %q, %v (saves %d)", s, err, f.Saves())
	}
}
