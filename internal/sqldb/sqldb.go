// Package sqldb opens the SQL databases of minicf's stores (the BBS's and
// the Cloud Controller's) the same way: SQLite (modernc.org/sqlite, no cgo)
// by default, PostgreSQL (pgx) by URL, with the same SQL on both ('?'
// placeholders, rebound to $1..$n for PostgreSQL) and passwords kept out of
// every message. Migrations and queries stay with each store.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

var sqlitePragmas = []string{
	"busy_timeout(5000)",
	"journal_mode(WAL)",
	"foreign_keys(ON)",
	"synchronous(NORMAL)",
}

// Open opens the database dsn names and checks it answers:
//
//	sqlite:///var/vcap/store/x.db   SQLite, absolute path
//	/var/vcap/store/x.db            SQLite, a plain path (relative is fine)
//	:memory:                        SQLite in memory, gone on Close
//	postgres://user:pass@host:5432/db?sslmode=disable   (or postgresql://)
//
// postgres says which SQL dialect to bind queries for. Errors never show
// the password.
func Open(ctx context.Context, dsn string) (db *sql.DB, postgres bool, err error) {
	driverName, driverDSN, memory, err := driverFor(dsn)
	if err != nil {
		return nil, false, err
	}
	db, err = sql.Open(driverName, driverDSN)
	if err != nil {
		return nil, false, Scrub(err, dsn)
	}
	if memory {
		// Every connection to :memory: is a database of its own: keep
		// exactly one, forever, so that all goroutines share it.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, false, Scrub(err, dsn)
	}
	return db, driverName == "pgx", nil
}

// driverFor picks the driver and its DSN.
func driverFor(dsn string) (driverName, driverDSN string, memory bool, err error) {
	lower := strings.ToLower(dsn)
	switch {
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return "pgx", dsn, false, nil
	case lower == "sqlite://:memory:":
		return sqliteDSN(":memory:")
	case strings.HasPrefix(lower, "sqlite://"):
		u, err := url.Parse(dsn)
		if err != nil {
			return "", "", false, fmt.Errorf("%q is not a sqlite:// URL: %v", dsn, err)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", "", false, fmt.Errorf("a sqlite:// URL takes only a path (minicf sets the SQLite PRAGMAs itself)")
		}
		path := u.Host + u.Path // sqlite:///abs/x.db or sqlite://rel.db
		if path == "" {
			return "", "", false, fmt.Errorf("the sqlite:// URL names no file; write sqlite:///path/to/file.db")
		}
		return sqliteDSN(path)
	case strings.Contains(dsn, "://"):
		return "", "", false, fmt.Errorf("unknown database kind %q: use sqlite:///path/to/file.db, a file path, :memory: or postgres://...",
			dsn[:strings.Index(dsn, "://")])
	case strings.HasPrefix(lower, "file:"):
		return "", "", false, fmt.Errorf("SQLite file: URIs are not accepted; write sqlite:///path/to/file.db or a plain path")
	case dsn == "":
		return "", "", false, fmt.Errorf("no database given: use sqlite:///path/to/file.db, a file path, :memory: or postgres://...")
	}
	return sqliteDSN(dsn)
}

// sqliteDSN is the modernc.org/sqlite DSN for a path or :memory:, with our
// PRAGMAs, and BEGIN IMMEDIATE for read-write transactions.
func sqliteDSN(path string) (driverName, driverDSN string, memory bool, err error) {
	q := url.Values{}
	for _, p := range sqlitePragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	if path == ":memory:" {
		return "sqlite", ":memory:?" + q.Encode(), true, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", false, err
	}
	dir := filepath.Dir(abs)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", false, fmt.Errorf("directory %s does not exist", dir)
		}
		return "", "", false, err
	} else if !fi.IsDir() {
		return "", "", false, fmt.Errorf("%s is not a directory", dir)
	}
	// A file: URI, so that a path with '?', '#' or '%' in it survives:
	// url.URL escapes them and SQLite decodes them.
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return "sqlite", u.String(), false, nil
}

var userinfoPassword = regexp.MustCompile(`(://[^:@/]*:)[^@]*@`)

// Redact hides any password in dsn.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return userinfoPassword.ReplaceAllString(dsn, "${1}xxxxx@")
	}
	_, hasPassword := u.User.Password()
	q := u.Query()
	if !hasPassword && !q.Has("password") {
		return dsn // as written: url.URL.String would normalize it
	}
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Scrub makes sure err does not show the DSN's password the way a
// driver echoing the DSN would ("user:pw@", "password=pw"); pgx hides it
// already, so this is a second line.
func Scrub(err error, dsn string) error {
	u, perr := url.Parse(dsn)
	if perr != nil {
		return err
	}
	r := []string{}
	if pw, ok := u.User.Password(); ok && pw != "" {
		for _, p := range []string{pw, url.PathEscape(pw), url.QueryEscape(pw)} {
			r = append(r, ":"+p+"@", ":xxxxx@")
		}
	}
	if pw := u.Query().Get("password"); pw != "" {
		for _, p := range []string{pw, url.QueryEscape(pw)} {
			r = append(r, "password="+p, "password=xxxxx")
		}
	}
	msg := err.Error()
	scrubbed := strings.NewReplacer(r...).Replace(msg)
	if scrubbed != msg {
		return errors.New(scrubbed)
	}
	return err
}

// Rebind turns the '?' placeholders of query into PostgreSQL's $1..$n
// ('?' inside a quoted string stays).
func Rebind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	quoted := false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
