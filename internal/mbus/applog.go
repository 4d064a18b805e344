package mbus

import (
	"strconv"
	"unicode/utf8"
)

// SubjectAppLogsPrefix starts the subject on which components publish an
// app's log lines: minicf.logs.<app guid>. It stands in for Loggregator: the
// router's RTR lines and, later, the app's own output travel on it. A
// message holds one or more AppLog objects, one JSON object per line.
const SubjectAppLogsPrefix = "minicf.logs."

// AppLog is one line of an app's logs, as published on SubjectAppLogsPrefix.
type AppLog struct {
	AppID         string `json:"app_id"`
	SourceType    string `json:"source_type"` // RTR, APP/PROC/WEB, STG, CELL
	InstanceIndex string `json:"instance_index,omitempty"`
	TimestampNs   int64  `json:"timestamp_ns"`
	Message       string `json:"message"`
}

// AppendAppLog encodes an AppLog without reflection: the router publishes
// one per proxied request, so encoding/json would show on its profile.
func AppendAppLog(b []byte, appID, sourceType, index string, tsNs int64, msg []byte) []byte {
	b = append(b, `{"app_id":`...)
	b = appendJSONString(b, appID)
	b = append(b, `,"source_type":`...)
	b = appendJSONString(b, sourceType)
	if index != "" {
		b = append(b, `,"instance_index":`...)
		b = appendJSONString(b, index)
	}
	b = append(b, `,"timestamp_ns":`...)
	b = strconv.AppendInt(b, tsNs, 10)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, string(msg))
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
