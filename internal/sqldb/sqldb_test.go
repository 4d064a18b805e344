package sqldb

import "testing"

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ? AND b = ?", "a = $1 AND b = $2"},
		{"IN (?, ?, ?)", "IN ($1, $2, $3)"},
		{"x = '?' AND y = ?", "x = '?' AND y = $1"},
		{"x = 'it''s ?' AND y = ? AND z = ?", "x = 'it''s ?' AND y = $1 AND z = $2"},
	} {
		if got := Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://minicf:s3cret@127.0.0.1:5432/db?sslmode=disable", "postgres://minicf:xxxxx@127.0.0.1:5432/db?sslmode=disable"},
		{"postgres://minicf@host/db", "postgres://minicf@host/db"},
		{"postgres://host/db?password=s3cret&sslmode=disable", "postgres://host/db?password=xxxxx&sslmode=disable"},
		{"postgres://u:p%zz@host/db", "postgres://u:xxxxx@host/db"}, // not a valid URL
		{"/var/vcap/store/bbs.db", "/var/vcap/store/bbs.db"},
		{":memory:", ":memory:"},
		{"sqlite:///var/bbs.db", "sqlite:///var/bbs.db"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
