package bbs

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/minicf/minicf/internal/sqldb"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// SQLStore is a Store on database/sql: SQLite (modernc.org/sqlite, no cgo)
// for a single BBS, or PostgreSQL (pgx) when the BBS keeps its records in a
// shared database. Both run the very same SQL; only the placeholders differ
// ('?' is rewritten to $1..$n for PostgreSQL by rebind).
//
// Every record is stored whole as JSON in a data column (the source of truth
// on read) next to the few columns queries filter on. Schema:
//
//	schema_version(version INTEGER PK, applied_at BIGINT)   -- one row per migration
//	desired_lrps(process_guid TEXT PK, domain TEXT, data TEXT)
//	actual_lrps(process_guid TEXT, instance_index INTEGER, domain TEXT,
//	            cell_id TEXT, state TEXT, data TEXT, PK(process_guid, instance_index))
//	domains(domain TEXT PK, expires_at BIGINT)               -- unix nanoseconds
//	tasks(task_guid TEXT PK, domain TEXT, cell_id TEXT, state TEXT, data TEXT)  -- migration 2
//
// with indexes on desired_lrps(domain), actual_lrps(domain),
// actual_lrps(cell_id), tasks(domain), tasks(cell_id) and tasks(state). data is TEXT rather than PostgreSQL's JSONB so that
// it comes back as it was written (JSONB reorders keys and refuses \u0000).
//
// Transactions. Write runs in a read-write transaction. On SQLite it starts
// with BEGIN IMMEDIATE (the driver's _txlock=immediate DSN parameter, which
// applies to read-write transactions only): the write lock is taken up front,
// so two writers queue on busy_timeout instead of one failing with
// SQLITE_BUSY when it tries to upgrade a read lock. On PostgreSQL it is a
// plain READ COMMITTED transaction; the BBS runs one writer at a time (see
// Store). Read runs in a read-only transaction: on SQLite a deferred BEGIN,
// which in WAL mode sees one snapshot and never blocks or is blocked by the
// writer; on PostgreSQL READ ONLY REPEATABLE READ, so every query in f sees
// the same snapshot, as on SQLite. Changing records inside Read is refused
// by the store itself on both, with the same error.
//
// Keys (process guid, domain, cell id) are stored in indexed columns, where
// PostgreSQL and SQLite differ on what they accept: PostgreSQL refuses NUL
// bytes and invalid UTF-8 and caps index entries near 2.7 kB. So that both
// behave alike, the store refuses such keys (ErrTypeInvalidRecord) when
// writing and reports them as not found when reading. Results are sorted in
// Go by byte order, since PostgreSQL's ORDER BY follows the database's
// collation (en_US sorts "a" before "B", SQLite does not).
type SQLStore struct {
	db      *sql.DB
	dialect sqlDialect
	where   string // the DSN with any password hidden, for messages
}

var _ Store = (*SQLStore)(nil)

type sqlDialect int

const (
	dialectSQLite sqlDialect = iota
	dialectPostgres
)

// sqlMaxKeyBytes bounds process guids, domains and cell ids, as Diego's SQL
// schema does (VARCHAR(255)); it keeps index entries well inside
// PostgreSQL's limit.
const sqlMaxKeyBytes = 255

// SQLite settings, applied by the driver to every connection it opens.

// sqlMigrations[i] brings the schema from version i to version i+1. Append
// only: never edit a migration that has shipped.
var sqlMigrations = [][]string{
	{ // 1: the tables
		`CREATE TABLE desired_lrps (
			process_guid TEXT NOT NULL PRIMARY KEY,
			domain TEXT NOT NULL,
			data TEXT NOT NULL
		)`,
		`CREATE INDEX desired_lrps_domain ON desired_lrps (domain)`,
		`CREATE TABLE actual_lrps (
			process_guid TEXT NOT NULL,
			instance_index INTEGER NOT NULL,
			domain TEXT NOT NULL,
			cell_id TEXT NOT NULL,
			state TEXT NOT NULL,
			data TEXT NOT NULL,
			PRIMARY KEY (process_guid, instance_index)
		)`,
		`CREATE INDEX actual_lrps_domain ON actual_lrps (domain)`,
		`CREATE INDEX actual_lrps_cell_id ON actual_lrps (cell_id)`,
		`CREATE TABLE domains (
			domain TEXT NOT NULL PRIMARY KEY,
			expires_at BIGINT NOT NULL
		)`,
	},
	{ // 2: Tasks (staging runs as one)
		`CREATE TABLE tasks (
			task_guid TEXT NOT NULL PRIMARY KEY,
			domain TEXT NOT NULL,
			cell_id TEXT NOT NULL,
			state TEXT NOT NULL,
			data TEXT NOT NULL
		)`,
		`CREATE INDEX tasks_domain ON tasks (domain)`,
		`CREATE INDEX tasks_cell_id ON tasks (cell_id)`,
		`CREATE INDEX tasks_state ON tasks (state)`,
	},
}

// sqlSchemaVersion is the schema version this code creates and understands.
var sqlSchemaVersion = len(sqlMigrations)

// sqlMigrationLockKey is the PostgreSQL advisory lock that serializes BBSes
// migrating the same database at once ("minicfbb" in ASCII).
const sqlMigrationLockKey int64 = 0x6d696e6963666262

// OpenSQLStore opens (creating if need be) the BBS database that dsn names
// and brings its schema up to date. dsn is one of:
//
//	sqlite:///var/vcap/store/bbs.db   SQLite, absolute path
//	/var/vcap/store/bbs.db            SQLite, a plain path (relative is fine)
//	:memory:                          SQLite in memory, gone on Close
//	postgres://user:pass@host:5432/db?sslmode=disable   (or postgresql://)
//
// A database whose schema is newer than this code knows is refused.
func OpenSQLStore(ctx context.Context, dsn string) (*SQLStore, error) {
	s := &SQLStore{where: sqldb.Redact(dsn)}
	if dsn == "" {
		s.where = `""`
	}
	fail := func(err error) (*SQLStore, error) {
		if s.db != nil {
			s.db.Close()
		}
		return nil, sqldb.Scrub(fmt.Errorf("cannot open the BBS database at %s: %w", s.where, err), dsn)
	}

	db, postgres, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return fail(err)
	}
	s.db = db
	if postgres {
		s.dialect = dialectPostgres
	}
	if err := s.migrate(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQLStore) Close() error { return s.db.Close() }

// String names the database, password hidden.
func (s *SQLStore) String() string { return s.where }

func (s *SQLStore) bind(query string) string {
	if s.dialect == dialectPostgres {
		return sqldb.Rebind(query)
	}
	return query
}

// migrate brings the schema to sqlSchemaVersion, in one transaction. Running it
// again, or from several processes at once, changes nothing.
func (s *SQLStore) migrate(ctx context.Context) (err error) {
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE on SQLite
	if err != nil {
		return fmt.Errorf("cannot start the schema migration: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if s.dialect == dialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, sqlMigrationLockKey); err != nil {
			return fmt.Errorf("cannot take the schema migration lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("cannot create the schema_version table: %w", err)
	}
	var current sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("cannot read the schema version: %w", err)
	}
	if current.Int64 > int64(sqlSchemaVersion) {
		return fmt.Errorf("its schema is version %d, newer than version %d that this minicf knows; "+
			"run the minicf that last wrote it, or a newer one", current.Int64, sqlSchemaVersion)
	}
	for v := int(current.Int64) + 1; v <= sqlSchemaVersion; v++ {
		for _, stmt := range sqlMigrations[v-1] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("schema migration %d failed: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.bind(`INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`),
			v, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("cannot record schema migration %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit the schema migration: %w", err)
	}
	return nil
}

// Read runs f in a read-only transaction.
func (s *SQLStore) Read(ctx context.Context, f func(StoreTx) error) error {
	return s.run(ctx, true, f)
}

// Write runs f in a read-write transaction, committed if f returns nil and
// rolled back if it returns an error or panics.
func (s *SQLStore) Write(ctx context.Context, f func(StoreTx) error) error {
	return s.run(ctx, false, f)
}

func (s *SQLStore) run(ctx context.Context, readOnly bool, f func(StoreTx) error) error {
	opts := &sql.TxOptions{ReadOnly: readOnly}
	kind := "read-write"
	if readOnly {
		kind = "read-only"
		if s.dialect == dialectPostgres {
			opts.Isolation = sql.LevelRepeatableRead
		}
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("cannot begin a %s transaction on the BBS database: %w", kind, err)
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback() // also when f panics; the panic goes on
		}
	}()
	if err := f(&sqlTx{s: s, tx: tx, ctx: ctx, readOnly: readOnly}); err != nil {
		return err
	}
	committed = true // Commit ends the transaction even when it fails
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit a %s transaction on the BBS database: %w", kind, err)
	}
	return nil
}

// sqlTx is the StoreTx of one transaction.
type sqlTx struct {
	s        *SQLStore
	tx       *sql.Tx
	ctx      context.Context
	readOnly bool
}

var errSQLReadOnly = errors.New("cannot change BBS records inside Read: use Write")

func (t *sqlTx) exec(query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, t.s.bind(query), args...)
}

func (t *sqlTx) query(query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(t.ctx, t.s.bind(query), args...)
}

// writable checks that t may change records and that keys can be stored.
func (t *sqlTx) writable(keys ...[2]string) error {
	if t.readOnly {
		return errSQLReadOnly
	}
	for _, k := range keys {
		if err := sqlCheckKey(k[0], k[1]); err != nil {
			return err
		}
	}
	return nil
}

func sqlCheckKey(what, v string) error {
	switch {
	case len(v) > sqlMaxKeyBytes:
		return NewError(ErrTypeInvalidRecord, "%s %q is %d bytes long; the store takes at most %d", what, clip(v), len(v), sqlMaxKeyBytes)
	case !utf8.ValidString(v):
		return NewError(ErrTypeInvalidRecord, "%s %q is not valid UTF-8", what, clip(v))
	case strings.IndexByte(v, 0) >= 0:
		return NewError(ErrTypeInvalidRecord, "%s %q contains a NUL byte", what, clip(v))
	}
	return nil
}

// sqlStorable reports whether v could be a stored key; a lookup of one that
// cannot finds nothing (without asking PostgreSQL, which would fail).
func sqlStorable(v string) bool { return sqlCheckKey("", v) == nil }

// sqlEncode is json.Marshal without HTML escaping, so that route JSON keeps
// its bytes ("<" stays "<", not "\u003c").
func sqlEncode(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func sqlNotFoundDesired(guid string) error {
	return NewError(ErrTypeResourceNotFound, "desired LRP %q does not exist", guid)
}

func sqlNotFoundActual(guid string, index int32) error {
	return NewError(ErrTypeResourceNotFound, "actual LRP %q index %d does not exist", guid, index)
}

// DesiredLRP returns the desired LRP, or an ErrResourceNotFound error.
func (t *sqlTx) DesiredLRP(processGUID string) (*DesiredLRP, error) {
	if !sqlStorable(processGUID) {
		return nil, sqlNotFoundDesired(processGUID)
	}
	return sqlGet[DesiredLRP](t, fmt.Sprintf("desired LRP %q", processGUID), func() error { return sqlNotFoundDesired(processGUID) },
		`SELECT data FROM desired_lrps WHERE process_guid = ?`, processGUID)
}

// sqlGet reads the one record that query (selecting its data column)
// finds, or returns notFound(); what names it in messages.
func sqlGet[T any](t *sqlTx, what string, notFound func() error, query string, args ...any) (*T, error) {
	var data string
	err := t.tx.QueryRowContext(t.ctx, t.s.bind(query), args...).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound()
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", what, err)
	}
	v := new(T)
	if err := json.Unmarshal([]byte(data), v); err != nil {
		return nil, fmt.Errorf("the stored %s is not valid JSON: %w", what, err)
	}
	return v, nil
}

// sqlList appends to out the records that query finds: each row is the
// key columns (scanned into keys) and then the data column. name describes
// the row just scanned for messages, kind the records ("desired LRPs").
func sqlList[T any](t *sqlTx, out []*T, kind string, name func() string, query string, args []any, keys ...any) ([]*T, error) {
	rows, err := t.query(query, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", kind, err)
	}
	defer rows.Close()
	var data string
	dest := append(keys[:len(keys):len(keys)], &data)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("cannot list %s: %w", kind, err)
		}
		v := new(T)
		if err := json.Unmarshal([]byte(data), v); err != nil {
			return nil, fmt.Errorf("the stored %s is not valid JSON: %w", name(), err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", kind, err)
	}
	return out, nil
}

// sqlEquals is the WHERE terms (col = ?) and arguments for the columns
// whose value is set; ok is false when a value cannot be stored, so nothing
// can match.
func sqlEquals(cols ...[2]string) (where []string, args []any, ok bool) {
	for _, c := range cols {
		if c[1] == "" {
			continue
		}
		if !sqlStorable(c[1]) {
			return nil, nil, false
		}
		where = append(where, c[0]+" = ?")
		args = append(args, c[1])
	}
	return where, args, true
}

// sqlWhere appends the WHERE clause of the terms, if any, to q.
func sqlWhere(q string, where []string) string {
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q
}

// createdOne turns the result of an INSERT ... ON CONFLICT DO NOTHING of
// one row into an error: the database's, or ErrResourceExists when the row
// was there already.
func createdOne(res sql.Result, err error, what string) error {
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("cannot create %s: %w", what, err)
	} else if n == 0 {
		return NewError(ErrTypeResourceExists, "%s already exists", what)
	}
	return nil
}

// sqlInChunk bounds the number of placeholders in one IN list, well below
// SQLite's and PostgreSQL's limits.
const sqlInChunk = 500

// DesiredLRPs lists desired LRPs in the domain (any if empty) with one of
// the process guids (any if none), sorted by process guid.
func (t *sqlTx) DesiredLRPs(filter DesiredLRPsRequest) ([]*DesiredLRP, error) {
	out := []*DesiredLRP{}
	where, args, ok := sqlEquals([2]string{"domain", filter.Domain})
	if !ok {
		return out, nil
	}
	// One query when no guids are given; otherwise one per chunk of guids.
	chunks := [][]string{nil}
	if len(filter.ProcessGUIDs) > 0 {
		chunks = chunks[:0]
		seen := map[string]bool{}
		var guids []string
		for _, g := range filter.ProcessGUIDs {
			if !seen[g] && sqlStorable(g) {
				seen[g] = true
				guids = append(guids, g)
			}
		}
		for len(guids) > 0 {
			n := min(len(guids), sqlInChunk)
			chunks = append(chunks, guids[:n])
			guids = guids[n:]
		}
	}
	for _, chunk := range chunks {
		w, a := where, args
		if chunk != nil {
			w = append(w[:len(w):len(w)], "process_guid IN ("+sqlPlaceholders(len(chunk))+")")
			a = append(a[:len(a):len(a)], sqlAnys(chunk)...)
		}
		var guid string
		var err error
		out, err = sqlList(t, out, "desired LRPs", func() string { return fmt.Sprintf("desired LRP %q", guid) },
			sqlWhere(`SELECT process_guid, data FROM desired_lrps`, w), a, &guid)
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProcessGUID < out[j].ProcessGUID })
	return out, nil
}

func sqlPlaceholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func sqlAnys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// CreateDesiredLRP stores a new desired LRP, or returns an
// ErrResourceExists error when its process guid is taken.
func (t *sqlTx) CreateDesiredLRP(d *DesiredLRP) error {
	if d == nil {
		return NewError(ErrTypeInvalidRequest, "no desired LRP to create")
	}
	if err := t.writable([2]string{"process_guid", d.ProcessGUID}, [2]string{"domain", d.Domain}); err != nil {
		return err
	}
	data, err := sqlEncode(d)
	if err != nil {
		return fmt.Errorf("cannot sqlEncode desired LRP %q: %w", d.ProcessGUID, err)
	}
	// ON CONFLICT DO NOTHING (same syntax on both databases) rather than a
	// unique-violation error: a failed statement would abort the whole
	// transaction on PostgreSQL, and no driver error codes are needed.
	res, err := t.exec(`INSERT INTO desired_lrps (process_guid, domain, data) VALUES (?, ?, ?)
		ON CONFLICT (process_guid) DO NOTHING`, d.ProcessGUID, d.Domain, data)
	return createdOne(res, err, fmt.Sprintf("desired LRP %q", d.ProcessGUID))
}

// UpdateDesiredLRP replaces a stored desired LRP, or returns an
// ErrResourceNotFound error when there is none.
func (t *sqlTx) UpdateDesiredLRP(d *DesiredLRP) error {
	if d == nil {
		return NewError(ErrTypeInvalidRequest, "no desired LRP to update")
	}
	if err := t.writable([2]string{"domain", d.Domain}); err != nil {
		return err
	}
	if !sqlStorable(d.ProcessGUID) {
		return sqlNotFoundDesired(d.ProcessGUID)
	}
	data, err := sqlEncode(d)
	if err != nil {
		return fmt.Errorf("cannot sqlEncode desired LRP %q: %w", d.ProcessGUID, err)
	}
	res, err := t.exec(`UPDATE desired_lrps SET domain = ?, data = ? WHERE process_guid = ?`, d.Domain, data, d.ProcessGUID)
	return t.changedOne(res, err, "update", func() error { return sqlNotFoundDesired(d.ProcessGUID) },
		fmt.Sprintf("desired LRP %q", d.ProcessGUID))
}

// DeleteDesiredLRP removes a desired LRP (not its actual LRPs), or returns
// an ErrResourceNotFound error when there is none.
func (t *sqlTx) DeleteDesiredLRP(processGUID string) error {
	if t.readOnly {
		return errSQLReadOnly
	}
	if !sqlStorable(processGUID) {
		return sqlNotFoundDesired(processGUID)
	}
	res, err := t.exec(`DELETE FROM desired_lrps WHERE process_guid = ?`, processGUID)
	return t.changedOne(res, err, "delete", func() error { return sqlNotFoundDesired(processGUID) },
		fmt.Sprintf("desired LRP %q", processGUID))
}

// changedOne turns the result of an UPDATE or DELETE of one row into an
// error: the database's, or notFound when no row matched.
func (t *sqlTx) changedOne(res sql.Result, err error, verb string, notFound func() error, what string) error {
	if err != nil {
		return fmt.Errorf("cannot %s %s: %w", verb, what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("cannot %s %s: %w", verb, what, err)
	}
	if n == 0 {
		return notFound()
	}
	return nil
}

// ActualLRP returns the actual LRP at the index, or an ErrResourceNotFound
// error.
func (t *sqlTx) ActualLRP(processGUID string, index int32) (*ActualLRP, error) {
	if !sqlStorable(processGUID) {
		return nil, sqlNotFoundActual(processGUID, index)
	}
	return sqlGet[ActualLRP](t, fmt.Sprintf("actual LRP %q index %d", processGUID, index),
		func() error { return sqlNotFoundActual(processGUID, index) },
		`SELECT data FROM actual_lrps WHERE process_guid = ? AND instance_index = ?`, processGUID, index)
}

// ActualLRPs lists the actual LRPs that match every field set in filter,
// sorted by process guid, then index.
func (t *sqlTx) ActualLRPs(filter ActualLRPsRequest) ([]*ActualLRP, error) {
	out := []*ActualLRP{}
	where, args, ok := sqlEquals([2]string{"domain", filter.Domain}, [2]string{"cell_id", filter.CellID},
		[2]string{"process_guid", filter.ProcessGUID})
	if !ok {
		return out, nil
	}
	if filter.Index != nil {
		where = append(where, "instance_index = ?")
		args = append(args, *filter.Index)
	}
	var guid string
	var index int32
	out, err := sqlList(t, out, "actual LRPs", func() string { return fmt.Sprintf("actual LRP %q index %d", guid, index) },
		sqlWhere(`SELECT process_guid, instance_index, data FROM actual_lrps`, where), args, &guid, &index)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ProcessGUID != out[j].ProcessGUID {
			return out[i].ProcessGUID < out[j].ProcessGUID
		}
		return out[i].Index < out[j].Index
	})
	return out, nil
}

// CreateActualLRP stores a new actual LRP, or returns an ErrResourceExists
// error when its slot (process guid, index) is taken.
func (t *sqlTx) CreateActualLRP(a *ActualLRP) error {
	if a == nil {
		return NewError(ErrTypeInvalidRequest, "no actual LRP to create")
	}
	if err := t.writable([2]string{"process_guid", a.ProcessGUID}, [2]string{"domain", a.Domain},
		[2]string{"cell_id", a.CellID}, [2]string{"state", a.State}); err != nil {
		return err
	}
	data, err := sqlEncode(a)
	if err != nil {
		return fmt.Errorf("cannot sqlEncode actual LRP %q index %d: %w", a.ProcessGUID, a.Index, err)
	}
	res, err := t.exec(`INSERT INTO actual_lrps (process_guid, instance_index, domain, cell_id, state, data)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (process_guid, instance_index) DO NOTHING`,
		a.ProcessGUID, a.Index, a.Domain, a.CellID, a.State, data)
	return createdOne(res, err, fmt.Sprintf("actual LRP %q index %d", a.ProcessGUID, a.Index))
}

// UpdateActualLRP replaces a stored actual LRP, or returns an
// ErrResourceNotFound error when there is none.
func (t *sqlTx) UpdateActualLRP(a *ActualLRP) error {
	if a == nil {
		return NewError(ErrTypeInvalidRequest, "no actual LRP to update")
	}
	if err := t.writable([2]string{"domain", a.Domain}, [2]string{"cell_id", a.CellID}, [2]string{"state", a.State}); err != nil {
		return err
	}
	if !sqlStorable(a.ProcessGUID) {
		return sqlNotFoundActual(a.ProcessGUID, a.Index)
	}
	data, err := sqlEncode(a)
	if err != nil {
		return fmt.Errorf("cannot sqlEncode actual LRP %q index %d: %w", a.ProcessGUID, a.Index, err)
	}
	res, err := t.exec(`UPDATE actual_lrps SET domain = ?, cell_id = ?, state = ?, data = ?
		WHERE process_guid = ? AND instance_index = ?`, a.Domain, a.CellID, a.State, data, a.ProcessGUID, a.Index)
	return t.changedOne(res, err, "update", func() error { return sqlNotFoundActual(a.ProcessGUID, a.Index) },
		fmt.Sprintf("actual LRP %q index %d", a.ProcessGUID, a.Index))
}

// DeleteActualLRP removes an actual LRP, or returns an ErrResourceNotFound
// error when there is none.
func (t *sqlTx) DeleteActualLRP(processGUID string, index int32) error {
	if t.readOnly {
		return errSQLReadOnly
	}
	if !sqlStorable(processGUID) {
		return sqlNotFoundActual(processGUID, index)
	}
	res, err := t.exec(`DELETE FROM actual_lrps WHERE process_guid = ? AND instance_index = ?`, processGUID, index)
	return t.changedOne(res, err, "delete", func() error { return sqlNotFoundActual(processGUID, index) },
		fmt.Sprintf("actual LRP %q index %d", processGUID, index))
}

var (
	sqlMinTime = time.Unix(0, math.MinInt64)
	sqlMaxTime = time.Unix(0, math.MaxInt64)
)

// sqlUnixNano is t.UnixNano, clamped to int64 (whose nanoseconds span the
// years 1678 to 2262) instead of overflowing: the zero time is long
// expired, a time centuries ahead never expires.
func sqlUnixNano(t time.Time) int64 {
	switch {
	case t.Before(sqlMinTime):
		return math.MinInt64
	case t.After(sqlMaxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// UpsertDomain sets when domain stops being fresh.
func (t *sqlTx) UpsertDomain(domain string, expiresAt time.Time) error {
	if err := t.writable([2]string{"domain", domain}); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO domains (domain, expires_at) VALUES (?, ?)
		ON CONFLICT (domain) DO UPDATE SET expires_at = excluded.expires_at`, domain, sqlUnixNano(expiresAt))
	if err != nil {
		return fmt.Errorf("cannot upsert domain %q: %w", domain, err)
	}
	return nil
}

// FreshDomains lists, sorted, the domains that expire after now.
func (t *sqlTx) FreshDomains(now time.Time) ([]string, error) {
	rows, err := t.query(`SELECT domain FROM domains WHERE expires_at > ?`, sqlUnixNano(now))
	if err != nil {
		return nil, fmt.Errorf("cannot list domains: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("cannot list domains: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot list domains: %w", err)
	}
	sort.Strings(out)
	return out, nil
}
