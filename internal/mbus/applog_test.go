package mbus

import (
	"encoding/json"
	"testing"
)

func TestAppendAppLogIsValidJSON(t *testing.T) {
	for _, msg := range []string{
		`plain`,
		`quotes " and \ backslashes`,
		"control \x00 \x1f \x7f chars\nnewline",
		"utf-8 ünïcødé ✓",
		"invalid \xff\xfe utf-8",
	} {
		b := AppendAppLog(nil, "app-guid", "RTR", "2", 42, []byte(msg))
		var l AppLog
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", msg, b, err)
		}
		want := AppLog{AppID: "app-guid", SourceType: "RTR", InstanceIndex: "2", TimestampNs: 42, Message: msg}
		if msg == "invalid \xff\xfe utf-8" {
			want.Message = "invalid \ufffd\ufffd utf-8"
		}
		if l != want {
			t.Errorf("round trip of %q = %+v", msg, l)
		}
	}
}
