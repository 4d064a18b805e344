package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// lockedWriter serialises writes: staging logs are printed from a
// goroutine while the push prints its progress.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gutter is the space between table columns, as the cf CLI's.
const gutter = 3

// writeTable writes rows (the first is the header) in columns padded to
// the widest cell plus a three-space gutter, trailing spaces trimmed.
func writeTable(w io.Writer, rows [][]string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+gutter))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// writeKeyValues writes "key:   value" lines aligned as the cf CLI's
// summaries are.
func writeKeyValues(w io.Writer, kv [][2]string) {
	width := 0
	for _, p := range kv {
		width = max(width, utf8.RuneCountInString(p[0])+1)
	}
	for _, p := range kv {
		k := p[0] + ":"
		fmt.Fprintln(w, strings.TrimRight(k+strings.Repeat(" ", width-utf8.RuneCountInString(k)+gutter)+p[1], " "))
	}
}

// formatMB renders megabytes as the cf CLI does: 256M, 1G.
func formatMB(mb int) string {
	if mb >= 1024 && mb%1024 == 0 {
		return fmt.Sprintf("%dG", mb/1024)
	}
	return fmt.Sprintf("%dM", mb)
}

// formatBytes renders a byte count for humans.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
