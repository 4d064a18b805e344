package router

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"

	"github.com/google/uuid"
)

func init() {
	// Request ids are made on every request; reading crypto/rand in batches
	// keeps that off the profile.
	uuid.EnableRandPool()
}

// requestID keeps a client's X-Vcap-Request-Id when it is a UUID, as gorouter
// documents, and makes one otherwise.
func requestID(h http.Header) string {
	if v := h[headerRequestID]; len(v) == 1 && isUUID(v[0]) {
		return v[0]
	}
	return uuid.NewString()
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// traceparent continues a W3C trace when the client sent a valid one (same
// trace id, the router's own span id) and starts one from the request id
// otherwise, so the request id and the trace id can be joined.
func traceparent(in, reqID string) string {
	var span [8]byte
	putUint64(span[:], rand.Uint64()|1) // an all-zero span id is invalid
	var b [55]byte
	copy(b[:], "00-")
	if validTraceparent(in) {
		copy(b[3:35], in[3:35])
	} else if !traceIDFrom(b[3:35], reqID) {
		// A client may send a request id that gives no usable trace id (the
		// nil UUID, or not hex): the trace then starts from random bits.
		var id [16]byte
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64()|1)
		hex.Encode(b[3:35], id[:])
	}
	b[35] = '-'
	hex.Encode(b[36:52], span[:])
	copy(b[52:], "-01")
	return string(b[:])
}

// traceIDFrom fills dst (32 bytes) with the request id's hex digits and
// reports whether they make a valid trace id: 32 lower-case hex digits, not all zero.
func traceIDFrom(dst []byte, reqID string) bool {
	n, zero := 0, true
	for i := 0; i < len(reqID) && n < 32; i++ {
		c := reqID[i]
		if c == '-' {
			continue
		}
		if !isHex(c) {
			return false
		}
		c = lower(c)
		if c != '0' {
			zero = false
		}
		dst[n] = c
		n++
	}
	return n == 32 && !zero
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func putUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// validTraceparent checks version 00 syntax and the all-zero ids the spec forbids.
func validTraceparent(s string) bool {
	if len(s) != 55 || s[0:3] != "00-" || s[35] != '-' || s[52] != '-' {
		return false
	}
	zeroTrace, zeroSpan := true, true
	for i := 3; i < 55; i++ {
		if i == 35 || i == 52 {
			continue
		}
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
		if c != '0' {
			if i < 35 {
				zeroTrace = false
			} else if i < 52 {
				zeroSpan = false
			}
		}
	}
	return !zeroTrace && !zeroSpan
}
