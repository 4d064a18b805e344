package cc

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/minicf/minicf/internal/sqldb"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// store is the Cloud Controller's database on database/sql: SQLite
// (modernc.org/sqlite, no cgo) by default, PostgreSQL (pgx) by URL. Both
// run the same SQL; '?' placeholders become $1..$n for PostgreSQL (rebind).
// It follows the BBS's SQL store (internal/bbs/sqlstore.go).
//
// Every record is stored whole as JSON in a data column, next to the
// columns that lookups and uniqueness need:
//
//	schema_version(version PK, applied_at)
//	orgs(guid PK, name UNIQUE, created_at, data)
//	spaces(guid PK, org_guid, name, created_at, data, UNIQUE(org_guid, name))
//	domains(guid PK, name UNIQUE, created_at, data)
//	apps(guid PK, space_guid, name, created_at, data, UNIQUE(space_guid, name))
//	processes(guid PK, app_guid, type, created_at, data, UNIQUE(app_guid, type))
//	routes(guid PK, space_guid, domain_guid, host, path, created_at, data, UNIQUE(domain_guid, host, path))
//	destinations(guid PK, route_guid, app_guid, created_at, data)
//	packages(guid PK, app_guid, created_at, data)
//	builds(guid PK, app_guid, package_guid, created_at, data)
//	droplets(guid PK, app_guid, package_guid, created_at, data)
//	jobs(guid PK, created_at, data)
//
// Transactions: write runs in a read-write transaction, which on SQLite
// begins IMMEDIATE (the driver's _txlock=immediate) and on PostgreSQL takes
// a transaction-scoped advisory lock first, so writers are serialized on
// both and a check-then-insert inside one (a route's uniqueness, an app
// name) is never raced; the UNIQUE constraints are the second line. read
// runs read-only (PostgreSQL: REPEATABLE READ, one snapshot).
type store struct {
	db       *sql.DB
	postgres bool
	where    string
}

// migrations[i] brings the schema from version i to i+1. Append only.
var migrations = [][]string{
	{
		`CREATE TABLE orgs (guid TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
		`CREATE TABLE spaces (guid TEXT NOT NULL PRIMARY KEY, org_guid TEXT NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL, UNIQUE (org_guid, name))`,
		`CREATE TABLE domains (guid TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
		`CREATE TABLE apps (guid TEXT NOT NULL PRIMARY KEY, space_guid TEXT NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL, UNIQUE (space_guid, name))`,
		`CREATE TABLE processes (guid TEXT NOT NULL PRIMARY KEY, app_guid TEXT NOT NULL, type TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL, UNIQUE (app_guid, type))`,
		`CREATE TABLE routes (guid TEXT NOT NULL PRIMARY KEY, space_guid TEXT NOT NULL, domain_guid TEXT NOT NULL, host TEXT NOT NULL, path TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL, UNIQUE (domain_guid, host, path))`,
		`CREATE INDEX routes_space ON routes (space_guid)`,
		`CREATE TABLE destinations (guid TEXT NOT NULL PRIMARY KEY, route_guid TEXT NOT NULL, app_guid TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
		`CREATE INDEX destinations_route ON destinations (route_guid)`,
		`CREATE INDEX destinations_app ON destinations (app_guid)`,
		`CREATE TABLE packages (guid TEXT NOT NULL PRIMARY KEY, app_guid TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
		`CREATE INDEX packages_app ON packages (app_guid)`,
		`CREATE TABLE builds (guid TEXT NOT NULL PRIMARY KEY, app_guid TEXT NOT NULL, package_guid TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
		`CREATE INDEX builds_app ON builds (app_guid)`,
		`CREATE TABLE droplets (guid TEXT NOT NULL PRIMARY KEY, app_guid TEXT NOT NULL, package_guid TEXT NOT NULL, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
		`CREATE INDEX droplets_app ON droplets (app_guid)`,
		`CREATE INDEX droplets_package ON droplets (package_guid)`,
		`CREATE TABLE jobs (guid TEXT NOT NULL PRIMARY KEY, created_at BIGINT NOT NULL, data TEXT NOT NULL)`,
		`CREATE INDEX jobs_created ON jobs (created_at)`,
	},
}

// migrationLockKey and writeLockKey are PostgreSQL advisory locks
// ("minicfcm" and "minicfcw" in ASCII).
const (
	migrationLockKey int64 = 0x6d696e696366636d
	writeLockKey     int64 = 0x6d696e6963666377
)

// openStore opens (creating) the database dsn names and migrates it:
// sqlite:///abs/cc.db, a plain path, :memory:, or postgres://...
func openStore(ctx context.Context, dsn string) (*store, error) {
	s := &store{where: sqldb.Redact(dsn)}
	fail := func(err error) (*store, error) {
		if s.db != nil {
			s.db.Close()
		}
		return nil, fmt.Errorf("cc: cannot open the Cloud Controller database at %s: %w", s.where, err)
	}
	db, postgres, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return fail(err)
	}
	s.db, s.postgres = db, postgres
	if err := s.migrate(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *store) Close() error   { return s.db.Close() }
func (s *store) String() string { return s.where }

func (s *store) bind(q string) string {
	if s.postgres {
		return sqldb.Rebind(q)
	}
	return q
}

func (s *store) migrate(ctx context.Context) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot start the schema migration: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
			return fmt.Errorf("cannot take the schema migration lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("cannot create the schema_version table: %w", err)
	}
	var current sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("cannot read the schema version: %w", err)
	}
	if current.Int64 > int64(len(migrations)) {
		return fmt.Errorf("its schema is version %d, newer than version %d that this minicf knows", current.Int64, len(migrations))
	}
	for v := int(current.Int64) + 1; v <= len(migrations); v++ {
		for _, stmt := range migrations[v-1] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("schema migration %d failed: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.bind(`INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`), v, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("cannot record schema migration %d: %w", v, err)
		}
	}
	return tx.Commit()
}

// stx is one transaction.
type stx struct {
	s        *store
	tx       *sql.Tx
	ctx      context.Context
	readOnly bool
}

func (s *store) read(ctx context.Context, f func(*stx) error) error  { return s.run(ctx, true, f) }
func (s *store) write(ctx context.Context, f func(*stx) error) error { return s.run(ctx, false, f) }

func (s *store) run(ctx context.Context, readOnly bool, f func(*stx) error) error {
	opts := &sql.TxOptions{ReadOnly: readOnly}
	if readOnly && s.postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("cannot begin a transaction on the Cloud Controller database: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tx.Rollback()
		}
	}()
	if !readOnly && s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, writeLockKey); err != nil {
			return fmt.Errorf("cannot take the Cloud Controller write lock: %w", err)
		}
	}
	if err := f(&stx{s: s, tx: tx, ctx: ctx, readOnly: readOnly}); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit to the Cloud Controller database: %w", err)
	}
	return nil
}

// Tables and the key columns of each, after guid and before created_at.
type table struct {
	name string
	cols []string
}

var (
	tOrgs         = table{"orgs", []string{"name"}}
	tSpaces       = table{"spaces", []string{"org_guid", "name"}}
	tDomains      = table{"domains", []string{"name"}}
	tApps         = table{"apps", []string{"space_guid", "name"}}
	tProcesses    = table{"processes", []string{"app_guid", "type"}}
	tRoutes       = table{"routes", []string{"space_guid", "domain_guid", "host", "path"}}
	tDestinations = table{"destinations", []string{"route_guid", "app_guid"}}
	tPackages     = table{"packages", []string{"app_guid"}}
	tBuilds       = table{"builds", []string{"app_guid", "package_guid"}}
	tDroplets     = table{"droplets", []string{"app_guid", "package_guid"}}
	tJobs         = table{"jobs", nil}
)

// rec is a stored record.
type rec interface {
	key() string
	created() time.Time
	columns() []any // values of table.cols, in order
}

// recPtr is *T for a record type T.
type recPtr[T any] interface {
	*T
	rec
}

// errNotFound is a record that does not exist.
var errNotFound = errors.New("not found")

// errUnique is an insert or update that a UNIQUE constraint refused.
var errUnique = errors.New("already exists")

// errBadValue is a key a database cannot store (NUL, invalid UTF-8).
var errBadValue = errors.New("a name or key holds a NUL byte or invalid UTF-8")

// storable reports whether v can be a key on both databases.
func storable(v string) bool {
	return utf8.ValidString(v) && !strings.ContainsRune(v, 0) && len(v) <= 4096
}

func (t *stx) exec(q string, args ...any) (sql.Result, error) {
	if t.readOnly {
		return nil, errors.New("cc: a change inside a read-only transaction")
	}
	return t.tx.ExecContext(t.ctx, t.s.bind(q), args...)
}

func mapDBError(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return errUnique
	}
	if strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return errUnique
	}
	return err
}

func checkColumns(vals []any) error {
	for _, v := range vals {
		if s, ok := v.(string); ok && !storable(s) {
			return errBadValue
		}
	}
	return nil
}

func insertRec(t *stx, tb table, r rec) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	vals := r.columns()
	if err := checkColumns(append(vals, r.key())); err != nil {
		return err
	}
	cols := append([]string{"guid"}, tb.cols...)
	cols = append(cols, "created_at", "data")
	args := append([]any{r.key()}, vals...)
	args = append(args, r.created().UnixNano(), string(data))
	q := "INSERT INTO " + tb.name + " (" + strings.Join(cols, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	_, err = t.exec(q, args...)
	return mapDBError(err)
}

func updateRec(t *stx, tb table, r rec) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	vals := r.columns()
	if err := checkColumns(vals); err != nil {
		return err
	}
	sets := make([]string, 0, len(tb.cols)+1)
	for _, c := range tb.cols {
		sets = append(sets, c+" = ?")
	}
	sets = append(sets, "data = ?")
	args := append(vals, string(data), r.key())
	res, err := t.exec("UPDATE "+tb.name+" SET "+strings.Join(sets, ", ")+" WHERE guid = ?", args...)
	if err != nil {
		return mapDBError(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

func deleteRec(t *stx, tb table, guid string) error {
	if !storable(guid) {
		return nil
	}
	_, err := t.exec("DELETE FROM "+tb.name+" WHERE guid = ?", guid)
	return err
}

func getRec[T any, P recPtr[T]](t *stx, tb table, guid string) (P, error) {
	if guid == "" || !storable(guid) {
		return nil, errNotFound
	}
	var data string
	err := t.tx.QueryRowContext(t.ctx, t.s.bind("SELECT data FROM "+tb.name+" WHERE guid = ?"), guid).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s %q: %w", tb.name, guid, err)
	}
	p := P(new(T))
	if err := json.Unmarshal([]byte(data), p); err != nil {
		return nil, fmt.Errorf("stored %s %q is not valid JSON: %w", tb.name, guid, err)
	}
	return p, nil
}

// listRecs returns the records matching where (all if ""), ordered by
// creation (created_at, then guid).
func listRecs[T any, P recPtr[T]](t *stx, tb table, where string, args ...any) ([]P, error) {
	for _, a := range args {
		if s, ok := a.(string); ok && !storable(s) {
			return nil, nil
		}
	}
	q := "SELECT data FROM " + tb.name
	if where != "" {
		q += " WHERE " + where
	}
	q += " ORDER BY created_at, guid"
	rows, err := t.tx.QueryContext(t.ctx, t.s.bind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", tb.name, err)
	}
	defer rows.Close()
	var out []P
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		p := P(new(T))
		if err := json.Unmarshal([]byte(data), p); err != nil {
			return nil, fmt.Errorf("a stored %s record is not valid JSON: %w", tb.name, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// inList is "col IN (?, ?, ...)" for n values.
func inList(col string, n int) string {
	return col + " IN (" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// listIn lists records whose col is one of vals (chunked).
func listIn[T any, P recPtr[T]](t *stx, tb table, col string, vals []string) ([]P, error) {
	var out []P
	seen := map[string]bool{}
	var uniq []string
	for _, v := range vals {
		if !seen[v] && storable(v) {
			seen[v] = true
			uniq = append(uniq, v)
		}
	}
	const chunk = 500
	for len(uniq) > 0 {
		n := min(chunk, len(uniq))
		args := make([]any, n)
		for i := range n {
			args[i] = uniq[i]
		}
		part, err := listRecs[T, P](t, tb, inList(col, n), args...)
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
		uniq = uniq[n:]
	}
	return out, nil
}
