package bbs

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/minicf/minicf/internal/sqldb"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Store tests run against SQLite always and against PostgreSQL when
// MINICF_TEST_POSTGRES_URL names a database the tests may create schemas in
// (.ci/run starts one and sets it). testStore checks the Store contract and
// can run against any Store; testSQLStore checks what is particular to
// SQLStore (reopening, schema versions, concurrency).

const stPostgresURLEnv = "MINICF_TEST_POSTGRES_URL"

func TestSQLiteStore(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() { t.Logf("SQLite store suite took %v", time.Since(start).Round(time.Millisecond)) })
	t.Run("Contract", func(t *testing.T) {
		testStore(t, func(t *testing.T) Store { return stOpen(t, filepath.Join(t.TempDir(), "bbs.db")) })
	})
	t.Run("SQL", func(t *testing.T) {
		testSQLStore(t, func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "bbs.db") })
	})
}

func TestSQLiteMemoryStore(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return stOpen(t, ":memory:") })
}

// stPostgres connects to the test PostgreSQL and returns a maker of empty
// schemas, one per test. With CI=true a missing database is a failure.
func stPostgres(t *testing.T) func(*testing.T) string {
	base := os.Getenv(stPostgresURLEnv)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is empty although CI=true: .ci/run should have started PostgreSQL and set it", stPostgresURLEnv)
		}
		t.Skipf("%s is not set; set it to postgres://user:pass@host:port/db?sslmode=disable (a database the tests may create schemas in) to run the store tests against PostgreSQL", stPostgresURLEnv)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if err := admin.PingContext(t.Context()); err != nil {
		t.Fatalf("cannot reach PostgreSQL at %s (%s): %v", sqldb.Redact(base), stPostgresURLEnv, err)
	}
	var version string
	admin.QueryRowContext(t.Context(), "SHOW server_version").Scan(&version)
	t.Logf("PostgreSQL %s", version)

	// newDSN makes an empty schema for one test, dropped when it ends, and
	// returns base with search_path set to it.
	newDSN := func(t *testing.T) string {
		schema := "test_" + stRandomHex(t, 8)
		if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
			t.Fatalf("creating schema %s: %v", schema, err)
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("dropping schema %s: %v", schema, err)
			}
		})
		u, err := url.Parse(base)
		if err != nil {
			t.Fatalf("%s: %v", stPostgresURLEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return newDSN
}

func TestPostgresStore(t *testing.T) {
	newDSN := stPostgres(t)
	start := time.Now()
	t.Cleanup(func() { t.Logf("PostgreSQL store suite took %v", time.Since(start).Round(time.Millisecond)) })
	t.Run("Contract", func(t *testing.T) {
		testStore(t, func(t *testing.T) Store { return stOpen(t, newDSN(t)) })
	})
	t.Run("SQL", func(t *testing.T) { testSQLStore(t, newDSN) })
}

func stRandomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func stOpen(t *testing.T, dsn string) *SQLStore {
	t.Helper()
	s, err := OpenSQLStore(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ---------------------------------------------------------------------------
// The Store contract.

func testStore(t *testing.T, open func(t *testing.T) Store) {
	t.Run("DesiredLRPLifecycle", func(t *testing.T) {
		s := open(t)
		d := stDesired("web-1", DomainCFApps)
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(d) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.DesiredLRP("web-1")
			if err != nil {
				return err
			}
			stEqual(t, "get after create", got, d)
			all, err := tx.DesiredLRPs(DesiredLRPsRequest{})
			stEqual(t, "list after create", all, []*DesiredLRP{d})
			return err
		})

		updated := *d
		updated.Instances = 5
		updated.Annotation = "v2"
		updated.Domain = "other-domain"
		updated.ModificationTag = d.ModificationTag.Increment()
		stWrite(t, s, func(tx StoreTx) error { return tx.UpdateDesiredLRP(&updated) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.DesiredLRP("web-1")
			if err != nil {
				return err
			}
			stEqual(t, "get after update", got, &updated)
			old, err := tx.DesiredLRPs(DesiredLRPsRequest{Domain: DomainCFApps})
			stEqual(t, "old domain after update", old, []*DesiredLRP{})
			moved, err2 := tx.DesiredLRPs(DesiredLRPsRequest{Domain: "other-domain"})
			stEqual(t, "new domain after update", moved, []*DesiredLRP{&updated})
			return errors.Join(err, err2)
		})

		stWrite(t, s, func(tx StoreTx) error { return tx.DeleteDesiredLRP("web-1") })
		stRead(t, s, func(tx StoreTx) error {
			if _, err := tx.DesiredLRP("web-1"); !errors.Is(err, ErrResourceNotFound) {
				t.Errorf("get after delete: got %v, want ResourceNotFound", err)
			}
			all, err := tx.DesiredLRPs(DesiredLRPsRequest{})
			stEqual(t, "list after delete", all, []*DesiredLRP{})
			return err
		})
	})

	t.Run("ActualLRPLifecycle", func(t *testing.T) {
		s := open(t)
		a := stActual("web-1", 0, DomainCFApps, "", StateUnclaimed)
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateActualLRP(a) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.ActualLRP("web-1", 0)
			if err != nil {
				return err
			}
			stEqual(t, "get after create", got, a)
			all, err := tx.ActualLRPs(ActualLRPsRequest{})
			stEqual(t, "list after create", all, []*ActualLRP{a})
			return err
		})

		running := *a
		running.ActualLRPInstanceKey = ActualLRPInstanceKey{InstanceGUID: "ig-1", CellID: "cell-1"}
		running.ActualLRPNetInfo = ActualLRPNetInfo{Address: "10.0.0.1", InstanceAddress: "10.255.0.1",
			Ports: []PortMapping{{ContainerPort: 8080, HostPort: 61001}}}
		running.State = StateRunning
		running.Routable = stPtr(true)
		running.ModificationTag = a.ModificationTag.Increment()
		stWrite(t, s, func(tx StoreTx) error { return tx.UpdateActualLRP(&running) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.ActualLRP("web-1", 0)
			if err != nil {
				return err
			}
			stEqual(t, "get after update", got, &running)
			onCell, err := tx.ActualLRPs(ActualLRPsRequest{CellID: "cell-1"})
			stEqual(t, "cell filter after update", onCell, []*ActualLRP{&running})
			return err
		})

		stWrite(t, s, func(tx StoreTx) error { return tx.DeleteActualLRP("web-1", 0) })
		stRead(t, s, func(tx StoreTx) error {
			if _, err := tx.ActualLRP("web-1", 0); !errors.Is(err, ErrResourceNotFound) {
				t.Errorf("get after delete: got %v, want ResourceNotFound", err)
			}
			all, err := tx.ActualLRPs(ActualLRPsRequest{})
			stEqual(t, "list after delete", all, []*ActualLRP{})
			return err
		})
	})

	t.Run("DesiredLRPFilters", func(t *testing.T) {
		s := open(t)
		d1, d2, d3 := stDesired("d1", DomainCFApps), stDesired("d2", DomainCFApps), stDesired("d3", "other")
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(tx.CreateDesiredLRP(d3), tx.CreateDesiredLRP(d1), tx.CreateDesiredLRP(d2))
		})
		for _, tc := range []struct {
			name   string
			filter DesiredLRPsRequest
			want   []string
		}{
			{"none", DesiredLRPsRequest{}, []string{"d1", "d2", "d3"}},
			{"domain", DesiredLRPsRequest{Domain: DomainCFApps}, []string{"d1", "d2"}},
			{"unknown domain", DesiredLRPsRequest{Domain: "nope"}, []string{}},
			{"guids", DesiredLRPsRequest{ProcessGUIDs: []string{"d3", "d1"}}, []string{"d1", "d3"}},
			{"guids with unknown", DesiredLRPsRequest{ProcessGUIDs: []string{"d1", "nope"}}, []string{"d1"}},
			{"guids repeated", DesiredLRPsRequest{ProcessGUIDs: []string{"d2", "d2", "d2"}}, []string{"d2"}},
			{"domain and guids", DesiredLRPsRequest{Domain: DomainCFApps, ProcessGUIDs: []string{"d2", "d3"}}, []string{"d2"}},
			{"domain and other guids", DesiredLRPsRequest{Domain: DomainCFApps, ProcessGUIDs: []string{"d3"}}, []string{}},
			{"empty guid list is no filter", DesiredLRPsRequest{ProcessGUIDs: []string{}}, []string{"d1", "d2", "d3"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				stRead(t, s, func(tx StoreTx) error {
					got, err := tx.DesiredLRPs(tc.filter)
					if err != nil {
						return err
					}
					if keys := stDesiredKeys(got); !reflect.DeepEqual(keys, tc.want) {
						t.Errorf("DesiredLRPs(%+v) = %v, want %v", tc.filter, keys, tc.want)
					}
					return nil
				})
			})
		}
	})

	t.Run("ActualLRPFilters", func(t *testing.T) {
		s := open(t)
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(
				tx.CreateActualLRP(stActual("d1", 2, DomainCFApps, "cell-1", StateRunning)),
				tx.CreateActualLRP(stActual("d1", 0, DomainCFApps, "cell-1", StateRunning)),
				tx.CreateActualLRP(stActual("d1", 1, DomainCFApps, "cell-2", StateClaimed)),
				tx.CreateActualLRP(stActual("d2", 0, DomainCFApps, "", StateUnclaimed)),
				tx.CreateActualLRP(stActual("d3", 0, "other", "cell-2", StateCrashed)),
			)
		})
		for _, tc := range []struct {
			name   string
			filter ActualLRPsRequest
			want   []string
		}{
			{"none", ActualLRPsRequest{}, []string{"d1/0", "d1/1", "d1/2", "d2/0", "d3/0"}},
			{"domain", ActualLRPsRequest{Domain: "other"}, []string{"d3/0"}},
			{"cell", ActualLRPsRequest{CellID: "cell-1"}, []string{"d1/0", "d1/2"}},
			{"process guid", ActualLRPsRequest{ProcessGUID: "d1"}, []string{"d1/0", "d1/1", "d1/2"}},
			{"process guid and index", ActualLRPsRequest{ProcessGUID: "d1", Index: stPtr[int32](1)}, []string{"d1/1"}},
			{"index alone", ActualLRPsRequest{Index: stPtr[int32](0)}, []string{"d1/0", "d2/0", "d3/0"}},
			{"process guid and cell", ActualLRPsRequest{ProcessGUID: "d1", CellID: "cell-2"}, []string{"d1/1"}},
			{"domain and cell", ActualLRPsRequest{Domain: DomainCFApps, CellID: "cell-2"}, []string{"d1/1"}},
			{"all four", ActualLRPsRequest{Domain: DomainCFApps, CellID: "cell-1", ProcessGUID: "d1", Index: stPtr[int32](2)}, []string{"d1/2"}},
			{"no match", ActualLRPsRequest{ProcessGUID: "d2", CellID: "cell-1"}, []string{}},
			{"unknown index", ActualLRPsRequest{ProcessGUID: "d1", Index: stPtr[int32](9)}, []string{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				stRead(t, s, func(tx StoreTx) error {
					got, err := tx.ActualLRPs(tc.filter)
					if err != nil {
						return err
					}
					if keys := stActualKeys(got); !reflect.DeepEqual(keys, tc.want) {
						t.Errorf("ActualLRPs(%+v) = %v, want %v", tc.filter, keys, tc.want)
					}
					return nil
				})
			})
		}
	})

	t.Run("SortedByteOrder", func(t *testing.T) {
		// Byte order, whatever the database's collation: "B" < "a" < "é".
		s := open(t)
		guids := []string{"é", "b", "a", "B", "A-1", "a_2"}
		stWrite(t, s, func(tx StoreTx) error {
			var errs []error
			for _, g := range guids {
				errs = append(errs, tx.CreateDesiredLRP(stDesired(g, DomainCFApps)))
				for _, i := range []int32{10, 2, 1} {
					errs = append(errs, tx.CreateActualLRP(stActual(g, i, DomainCFApps, "c", StateUnclaimed)))
				}
				errs = append(errs, tx.UpsertDomain(g, time.Now().Add(time.Hour)))
			}
			return errors.Join(errs...)
		})
		stRead(t, s, func(tx StoreTx) error {
			ds, err1 := tx.DesiredLRPs(DesiredLRPsRequest{})
			as, err2 := tx.ActualLRPs(ActualLRPsRequest{})
			doms, err3 := tx.FreshDomains(time.Now())
			wantGUIDs := []string{"A-1", "B", "a", "a_2", "b", "é"}
			stEqual(t, "desired order", stDesiredKeys(ds), wantGUIDs)
			var wantActual []string
			for _, g := range wantGUIDs {
				wantActual = append(wantActual, g+"/1", g+"/2", g+"/10")
			}
			stEqual(t, "actual order", stActualKeys(as), wantActual)
			stEqual(t, "domain order", doms, wantGUIDs)
			return errors.Join(err1, err2, err3)
		})
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(tx.CreateDesiredLRP(stDesired("there", DomainCFApps)),
				tx.CreateActualLRP(stActual("there", 0, DomainCFApps, "", StateUnclaimed)))
		})
		for _, tc := range []struct {
			name string
			op   func(tx StoreTx) error
			msg  string
		}{
			{"get desired", func(tx StoreTx) error { _, err := tx.DesiredLRP("nope"); return err }, `desired LRP "nope" does not exist`},
			{"update desired", func(tx StoreTx) error { return tx.UpdateDesiredLRP(stDesired("nope", DomainCFApps)) }, `desired LRP "nope" does not exist`},
			{"delete desired", func(tx StoreTx) error { return tx.DeleteDesiredLRP("nope") }, `desired LRP "nope" does not exist`},
			{"get actual", func(tx StoreTx) error { _, err := tx.ActualLRP("nope", 0); return err }, `actual LRP "nope" index 0 does not exist`},
			{"get actual at other index", func(tx StoreTx) error { _, err := tx.ActualLRP("there", 3); return err }, `actual LRP "there" index 3 does not exist`},
			{"update actual", func(tx StoreTx) error {
				return tx.UpdateActualLRP(stActual("there", 1, DomainCFApps, "", StateUnclaimed))
			}, `actual LRP "there" index 1 does not exist`},
			{"delete actual", func(tx StoreTx) error { return tx.DeleteActualLRP("nope", 7) }, `actual LRP "nope" index 7 does not exist`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := s.Write(t.Context(), tc.op)
				if !errors.Is(err, ErrResourceNotFound) {
					t.Fatalf("got %v, want a ResourceNotFound error", err)
				}
				var e *Error
				if !errors.As(err, &e) || e.Message != tc.msg {
					t.Errorf("got message %q, want %q", err, tc.msg)
				}
			})
		}
		stRead(t, s, func(tx StoreTx) error {
			_, err1 := tx.DesiredLRP("there")
			_, err2 := tx.ActualLRP("there", 0)
			return errors.Join(err1, err2)
		})
	})

	t.Run("Exists", func(t *testing.T) {
		s := open(t)
		first := stDesired("dup", DomainCFApps)
		first.Annotation = "first"
		firstActual := stActual("dup", 0, DomainCFApps, "cell-1", StateRunning)
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(tx.CreateDesiredLRP(first), tx.CreateActualLRP(firstActual))
		})
		second := stDesired("dup", "elsewhere")
		second.Annotation = "second"
		stWrite(t, s, func(tx StoreTx) error {
			err := tx.CreateDesiredLRP(second)
			if !errors.Is(err, ErrResourceExists) || err.Error() != `ResourceExists: desired LRP "dup" already exists` {
				t.Errorf("second desired LRP: got %v, want ResourceExists", err)
			}
			err = tx.CreateActualLRP(stActual("dup", 0, "elsewhere", "cell-2", StateClaimed))
			if !errors.Is(err, ErrResourceExists) || err.Error() != `ResourceExists: actual LRP "dup" index 0 already exists` {
				t.Errorf("second actual LRP: got %v, want ResourceExists", err)
			}
			// The transaction goes on after such an error (on PostgreSQL a
			// failed statement would have aborted it).
			return errors.Join(tx.CreateActualLRP(stActual("dup", 1, DomainCFApps, "", StateUnclaimed)),
				tx.CreateDesiredLRP(stDesired("other", DomainCFApps)))
		})
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.DesiredLRP("dup")
			if err != nil {
				return err
			}
			stEqual(t, "first desired LRP kept", got, first)
			a, err := tx.ActualLRP("dup", 0)
			if err != nil {
				return err
			}
			stEqual(t, "first actual LRP kept", a, firstActual)
			as, err := tx.ActualLRPs(ActualLRPsRequest{})
			stEqual(t, "actual LRPs", stActualKeys(as), []string{"dup/0", "dup/1"})
			ds, err2 := tx.DesiredLRPs(DesiredLRPsRequest{})
			stEqual(t, "desired LRPs", stDesiredKeys(ds), []string{"dup", "other"})
			return errors.Join(err, err2)
		})
	})

	t.Run("RollbackOnError", func(t *testing.T) {
		s := open(t)
		stSeed(t, s)
		before := stSnapshot(t, s)
		boom := errors.New("boom")
		err := s.Write(t.Context(), func(tx StoreTx) error {
			if err := stChangeEverything(tx); err != nil {
				t.Errorf("changes before the error: %v", err)
			}
			return fmt.Errorf("giving up: %w", boom)
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Write returned %v, want f's error", err)
		}
		stEqual(t, "records after a failed Write", stSnapshot(t, s), before)

		// A BBS error from f comes back as it was.
		err = s.Write(t.Context(), func(tx StoreTx) error {
			if err := tx.CreateDesiredLRP(stDesired("new-1", DomainCFApps)); err != nil {
				return err
			}
			return tx.DeleteDesiredLRP("not-there")
		})
		if !errors.Is(err, ErrResourceNotFound) {
			t.Fatalf("Write returned %v, want ResourceNotFound", err)
		}
		stEqual(t, "records after a Write that failed halfway", stSnapshot(t, s), before)
	})

	t.Run("RollbackOnPanic", func(t *testing.T) {
		s := open(t)
		stSeed(t, s)
		before := stSnapshot(t, s)
		func() {
			defer func() {
				if r := recover(); r != "kaboom" {
					t.Errorf("recovered %v, want the panic of f", r)
				}
			}()
			s.Write(t.Context(), func(tx StoreTx) error {
				if err := stChangeEverything(tx); err != nil {
					t.Errorf("changes before the panic: %v", err)
				}
				panic("kaboom")
			})
		}()
		stEqual(t, "records after a panicking Write", stSnapshot(t, s), before)
		// The store still works (no transaction was left open).
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := s.Write(ctx, func(tx StoreTx) error { return tx.CreateDesiredLRP(stDesired("after", "x")) }); err != nil {
			t.Fatalf("Write after a panic: %v", err)
		}
	})

	t.Run("ReadIsReadOnly", func(t *testing.T) {
		s := open(t)
		stSeed(t, s)
		before := stSnapshot(t, s)
		d := stDesired("keep", DomainCFApps)
		a := stActual("keep", 0, DomainCFApps, "cell-1", StateRunning)
		for _, tc := range []struct {
			name string
			op   func(tx StoreTx) error
		}{
			{"create desired", func(tx StoreTx) error { return tx.CreateDesiredLRP(stDesired("new", "x")) }},
			{"update desired", func(tx StoreTx) error { return tx.UpdateDesiredLRP(d) }},
			{"delete desired", func(tx StoreTx) error { return tx.DeleteDesiredLRP("keep") }},
			{"create actual", func(tx StoreTx) error { return tx.CreateActualLRP(stActual("new", 0, "x", "", StateUnclaimed)) }},
			{"update actual", func(tx StoreTx) error { return tx.UpdateActualLRP(a) }},
			{"delete actual", func(tx StoreTx) error { return tx.DeleteActualLRP("keep", 0) }},
			{"upsert domain", func(tx StoreTx) error { return tx.UpsertDomain("new", time.Now().Add(time.Hour)) }},
			{"create task", func(tx StoreTx) error { return tx.CreateTask(stTask("new-task", DomainCFTasks, "", TaskStatePending)) }},
			{"update task", func(tx StoreTx) error {
				return tx.UpdateTask(stTask("keep-task", DomainCFTasks, "cell-9", TaskStateRunning))
			}},
			{"delete task", func(tx StoreTx) error { return tx.DeleteTask("keep-task") }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := s.Read(t.Context(), func(tx StoreTx) error {
					if err := tc.op(tx); err == nil {
						t.Errorf("changing a record inside Read succeeded")
					}
					// Reading still works afterwards, in the same transaction.
					_, err := tx.DesiredLRP("keep")
					return err
				})
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
			})
		}
		stEqual(t, "records after Reads that tried to write", stSnapshot(t, s), before)
		mine := errors.New("mine")
		if err := s.Read(t.Context(), func(StoreTx) error { return mine }); !errors.Is(err, mine) {
			t.Errorf("Read returned %v, want f's error", err)
		}
	})

	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t)
		d := stRichDesired("rich")
		actuals := []*ActualLRP{stRichActual("rich", 0, nil), stRichActual("rich", 1, stPtr(true)), stRichActual("rich", 2, stPtr(false))}
		stWrite(t, s, func(tx StoreTx) error {
			errs := []error{tx.CreateDesiredLRP(d)}
			for _, a := range actuals {
				errs = append(errs, tx.CreateActualLRP(a))
			}
			return errors.Join(errs...)
		})
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.DesiredLRP("rich")
			if err != nil {
				return err
			}
			stEqual(t, "desired LRP", got, d)
			if !bytes.Equal(got.Routes["tcp-router"], d.Routes["tcp-router"]) {
				t.Errorf("tcp-router routes changed bytes: %s", got.Routes["tcp-router"])
			}
			if !bytes.Equal(got.Routes["html"], []byte(`{"x":"<b>&amp;</b>"}`)) {
				t.Errorf("route JSON with <, > and & came back as %s, want it unescaped", got.Routes["html"])
			}
			routes, err := got.Routes.CFRoutes()
			if err != nil || len(routes) != 2 || routes[1].RouteServiceURL != "https://rs.example.com/?a=1&b=<2>" {
				t.Errorf("cf-router routes: %+v, %v", routes, err)
			}
			for _, want := range actuals {
				a, err := tx.ActualLRP("rich", want.Index)
				if err != nil {
					return err
				}
				stEqual(t, fmt.Sprintf("actual LRP %d", want.Index), a, want)
				if (a.Routable == nil) != (want.Routable == nil) || a.IsRoutable() != want.IsRoutable() {
					t.Errorf("actual LRP %d: routable %v, want %v", want.Index, a.Routable, want.Routable)
				}
			}
			list, err := tx.ActualLRPs(ActualLRPsRequest{ProcessGUID: "rich"})
			stEqual(t, "actual LRP list", list, actuals)
			return err
		})

		// Route JSON is stored compact: whitespace between tokens goes, the
		// rest of the bytes stay.
		spaced := stDesired("spaced", DomainCFApps)
		spaced.Routes = Routes{"diego-ssh": json.RawMessage("{ \"container_port\" : 2222,\n \"host_fingerprint\": \"a b\" }")}
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(spaced) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.DesiredLRP("spaced")
			if err != nil {
				return err
			}
			stEqual(t, "spaced route JSON", string(got.Routes["diego-ssh"]), `{"container_port":2222,"host_fingerprint":"a b"}`)
			return nil
		})
	})

	t.Run("OddStrings", func(t *testing.T) {
		s := open(t)
		odd := []struct{ name, v string }{
			{"unicode", "ünïcødé ✓ 日本語 🚀 \u0301e"},
			{"quotes", `it's "quoted" \ back\\slash ` + "`tick`"},
			{"sql", "'; DROP TABLE desired_lrps; --"},
			{"placeholders", "? $1 ?? :name @p1 %s"},
			{"control", "tab\tnewline\nCR\r bell\a"},
			{"separators", "\u2028\u2029"},
			{"html", "<script>&amp;</script>"},
			{"leading and trailing space", "  x  "},
		}
		for i, tc := range odd {
			t.Run(tc.name, func(t *testing.T) {
				// In the JSON only...
				d := stDesired(fmt.Sprintf("odd-%d", i), DomainCFApps)
				d.Annotation = tc.v
				d.LogGUID = tc.v
				d.Action.Args = []string{tc.v, tc.v}
				d.Action.Env = []EnvironmentVariable{{Name: tc.v, Value: tc.v}}
				d.MetricTags = map[string]MetricTagValue{tc.v: {Static: tc.v}}
				d.PlacementTags = []string{tc.v}
				// ...and in the key columns.
				keyed := stDesired(tc.v, tc.v)
				a := stActual(tc.v, 0, tc.v, tc.v, StateRunning)
				a.CrashReason = tc.v
				stWrite(t, s, func(tx StoreTx) error {
					return errors.Join(tx.CreateDesiredLRP(d), tx.CreateDesiredLRP(keyed), tx.CreateActualLRP(a),
						tx.UpsertDomain(tc.v, time.Now().Add(time.Hour)))
				})
				stRead(t, s, func(tx StoreTx) error {
					got, err := tx.DesiredLRP(d.ProcessGUID)
					if err != nil {
						return err
					}
					stEqual(t, "desired LRP", got, d)
					gotKeyed, err := tx.DesiredLRP(tc.v)
					if err != nil {
						return err
					}
					stEqual(t, "desired LRP with odd keys", gotKeyed, keyed)
					byDomain, err := tx.DesiredLRPs(DesiredLRPsRequest{Domain: tc.v, ProcessGUIDs: []string{tc.v}})
					if err != nil {
						return err
					}
					stEqual(t, "desired LRP by odd domain", byDomain, []*DesiredLRP{keyed})
					byCell, err := tx.ActualLRPs(ActualLRPsRequest{Domain: tc.v, CellID: tc.v, ProcessGUID: tc.v})
					if err != nil {
						return err
					}
					stEqual(t, "actual LRP by odd keys", byCell, []*ActualLRP{a})
					doms, err := tx.FreshDomains(time.Now())
					if err != nil {
						return err
					}
					if !stContains(doms, tc.v) {
						t.Errorf("fresh domains %q lack %q", doms, tc.v)
					}
					return nil
				})
			})
		}

		t.Run("big and NUL in the JSON", func(t *testing.T) {
			d := stDesired("big", DomainCFApps)
			d.Annotation = strings.Repeat("0123456789abcdé\"'\\", 64<<10) // ~1.2 MB
			d.LogGUID = "nul\x00byte"
			routes := make([]CFRoute, 0, 1000)
			for i := range 1000 {
				routes = append(routes, CFRoute{Hostnames: []string{fmt.Sprintf("host-%d.example.com", i)}, Port: 8080})
			}
			d.Routes = Routes{}.SetCFRoutes(routes)
			stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(d) })
			stRead(t, s, func(tx StoreTx) error {
				got, err := tx.DesiredLRP("big")
				if err != nil {
					return err
				}
				if got.Annotation != d.Annotation || got.LogGUID != d.LogGUID {
					t.Errorf("big annotation (%d bytes) or NUL log guid did not round-trip", len(d.Annotation))
				}
				stEqual(t, "big desired LRP", got, d)
				return nil
			})
		})

		t.Run("invalid UTF-8 in the JSON becomes U+FFFD", func(t *testing.T) {
			d := stDesired("bad-utf8", DomainCFApps)
			d.Annotation = "a\xffb"
			stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(d) })
			stRead(t, s, func(tx StoreTx) error {
				got, err := tx.DesiredLRP("bad-utf8")
				if err == nil && got.Annotation != "a\uFFFDb" {
					t.Errorf("annotation %q, want %q (as encoding/json writes it)", got.Annotation, "a\uFFFDb")
				}
				return err
			})
		})
	})

	t.Run("UnstorableKeys", func(t *testing.T) {
		// Keys PostgreSQL cannot hold are refused on every database, and
		// looking them up finds nothing (without failing the transaction).
		s := open(t)
		for _, tc := range []struct{ name, v string }{
			{"NUL", "a\x00b"},
			{"invalid UTF-8", "a\xffb"},
			{"too long", strings.Repeat("x", sqlMaxKeyBytes+1)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				stWrite(t, s, func(tx StoreTx) error {
					for _, op := range []struct {
						name string
						err  error
					}{
						{"desired guid", tx.CreateDesiredLRP(stDesired(tc.v, DomainCFApps))},
						{"desired domain", tx.CreateDesiredLRP(stDesired("ok-guid", tc.v))},
						{"actual guid", tx.CreateActualLRP(stActual(tc.v, 0, DomainCFApps, "", StateUnclaimed))},
						{"actual cell", tx.CreateActualLRP(stActual("ok-guid", 0, DomainCFApps, tc.v, StateRunning))},
						{"domain", tx.UpsertDomain(tc.v, time.Now().Add(time.Hour))},
						{"task guid", tx.CreateTask(stTask(tc.v, DomainCFTasks, "", TaskStatePending))},
						{"task domain", tx.CreateTask(stTask("ok-task", tc.v, "", TaskStatePending))},
						{"task cell", tx.CreateTask(stTask("ok-task", DomainCFTasks, tc.v, TaskStateRunning))},
					} {
						var e *Error
						if !errors.As(op.err, &e) || e.Type != ErrTypeInvalidRecord {
							t.Errorf("%s %q: got %v, want an InvalidRecord error", op.name, clip(tc.v), op.err)
						}
					}
					if _, err := tx.DesiredLRP(tc.v); !errors.Is(err, ErrResourceNotFound) {
						t.Errorf("get desired: got %v, want ResourceNotFound", err)
					}
					if _, err := tx.ActualLRP(tc.v, 0); !errors.Is(err, ErrResourceNotFound) {
						t.Errorf("get actual: got %v, want ResourceNotFound", err)
					}
					if err := tx.DeleteDesiredLRP(tc.v); !errors.Is(err, ErrResourceNotFound) {
						t.Errorf("delete desired: got %v, want ResourceNotFound", err)
					}
					ds, err := tx.DesiredLRPs(DesiredLRPsRequest{Domain: tc.v})
					if err != nil || len(ds) != 0 {
						t.Errorf("desired by domain: %v, %v", ds, err)
					}
					ds, err = tx.DesiredLRPs(DesiredLRPsRequest{ProcessGUIDs: []string{tc.v}})
					if err != nil || len(ds) != 0 {
						t.Errorf("desired by guid: %v, %v", ds, err)
					}
					as, err := tx.ActualLRPs(ActualLRPsRequest{CellID: tc.v})
					if err != nil || len(as) != 0 {
						t.Errorf("actual by cell: %v, %v", as, err)
					}
					if _, err := tx.Task(tc.v); !errors.Is(err, ErrResourceNotFound) {
						t.Errorf("get task: got %v, want ResourceNotFound", err)
					}
					if err := tx.DeleteTask(tc.v); !errors.Is(err, ErrResourceNotFound) {
						t.Errorf("delete task: got %v, want ResourceNotFound", err)
					}
					ts, err := tx.Tasks(TasksRequest{CellID: tc.v})
					if err != nil || len(ts) != 0 {
						t.Errorf("tasks by cell: %v, %v", ts, err)
					}
					// The transaction is still good.
					return tx.CreateDesiredLRP(stDesired("after-"+strings.ReplaceAll(tc.name, " ", "-"), DomainCFApps))
				})
			})
		}
	})

	t.Run("Domains", func(t *testing.T) {
		s := open(t)
		now := time.Unix(1_700_000_000, 0)
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(
				tx.UpsertDomain("fresh", now.Add(time.Minute)),
				tx.UpsertDomain("expired", now.Add(-time.Minute)),
				tx.UpsertDomain("at-now", now), // expiry must be after now
				tx.UpsertDomain("zero-time", time.Time{}),
				tx.UpsertDomain("forever", now.AddDate(10000, 0, 0)), // beyond int64 nanoseconds
				tx.UpsertDomain("just-after", now.Add(time.Nanosecond)),
			)
		})
		fresh := func(at time.Time) []string {
			var out []string
			stRead(t, s, func(tx StoreTx) (err error) { out, err = tx.FreshDomains(at); return err })
			return out
		}
		for _, tc := range []struct {
			name string
			at   time.Time
			want []string
		}{
			{"now", now, []string{"forever", "fresh", "just-after"}},
			{"a nanosecond later", now.Add(time.Nanosecond), []string{"forever", "fresh"}},
			{"an hour ago", now.Add(-time.Hour), []string{"at-now", "expired", "forever", "fresh", "just-after"}},
			{"next year", now.AddDate(1, 0, 0), []string{"forever"}},
			{"the zero time", time.Time{}, []string{"at-now", "expired", "forever", "fresh", "just-after"}},
		} {
			t.Run(tc.name, func(t *testing.T) { stEqual(t, "fresh domains", fresh(tc.at), tc.want) })
		}

		// Upserting again moves the expiry either way.
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(tx.UpsertDomain("expired", now.Add(time.Hour)), tx.UpsertDomain("fresh", now.Add(-time.Second)))
		})
		stEqual(t, "fresh domains after upserts", fresh(now), []string{"expired", "forever", "just-after"})
		stEqual(t, "no domains", fresh(now.AddDate(20000, 0, 0)), []string{})
	})

	t.Run("EmptyListsAreNotNil", func(t *testing.T) {
		s := open(t)
		stRead(t, s, func(tx StoreTx) error {
			ds, err1 := tx.DesiredLRPs(DesiredLRPsRequest{})
			as, err2 := tx.ActualLRPs(ActualLRPsRequest{})
			doms, err3 := tx.FreshDomains(time.Now())
			ts, err4 := tx.Tasks(TasksRequest{})
			if ds == nil || as == nil || doms == nil || ts == nil {
				t.Errorf("empty lists should be empty, not nil (they sqlEncode as [] rather than null): %#v %#v %#v %#v", ds, as, doms, ts)
			}
			return errors.Join(err1, err2, err3, err4)
		})
	})

	t.Run("ManyProcessGUIDs", func(t *testing.T) {
		s := open(t)
		const n = 1200 // several IN lists' worth
		var want, ask []string
		stWrite(t, s, func(tx StoreTx) error {
			for i := range n {
				g := fmt.Sprintf("pg-%04d", i)
				if err := tx.CreateDesiredLRP(stDesired(g, DomainCFApps)); err != nil {
					return err
				}
				if i%3 != 0 {
					want = append(want, g)
					ask = append(ask, g, g) // twice
				}
			}
			return nil
		})
		for i := range 100 {
			ask = append(ask, fmt.Sprintf("missing-%d", i))
		}
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.DesiredLRPs(DesiredLRPsRequest{ProcessGUIDs: ask})
			if err != nil {
				return err
			}
			stEqual(t, "desired LRPs by many guids", stDesiredKeys(got), want)
			return nil
		})
	})

	t.Run("TaskLifecycle", func(t *testing.T) {
		s := open(t)
		task := stTask("stage-1", DomainCFTasks, "", TaskStatePending)
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateTask(task) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.Task("stage-1")
			if err != nil {
				return err
			}
			stEqual(t, "get after create", got, task)
			all, err := tx.Tasks(TasksRequest{})
			stEqual(t, "list after create", all, []*Task{task})
			return err
		})

		running := *task
		running.State, running.CellID, running.UpdatedAt = TaskStateRunning, "cell-1", task.UpdatedAt+1
		stWrite(t, s, func(tx StoreTx) error { return tx.UpdateTask(&running) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.Task("stage-1")
			if err != nil {
				return err
			}
			stEqual(t, "get after update", got, &running)
			onCell, err := tx.Tasks(TasksRequest{CellID: "cell-1"})
			stEqual(t, "cell filter after update", onCell, []*Task{&running})
			return err
		})

		completed := running
		completed.State, completed.CellID, completed.Failed, completed.FailureReason = TaskStateCompleted, "", true, "Exited with status 1"
		stWrite(t, s, func(tx StoreTx) error { return tx.UpdateTask(&completed) })
		stRead(t, s, func(tx StoreTx) error {
			onCell, err := tx.Tasks(TasksRequest{CellID: "cell-1"})
			stEqual(t, "cell filter after the task left the cell", onCell, []*Task{})
			return err
		})

		stWrite(t, s, func(tx StoreTx) error { return tx.DeleteTask("stage-1") })
		stRead(t, s, func(tx StoreTx) error {
			if _, err := tx.Task("stage-1"); !errors.Is(err, ErrResourceNotFound) {
				t.Errorf("get after delete: got %v, want ResourceNotFound", err)
			}
			all, err := tx.Tasks(TasksRequest{})
			stEqual(t, "list after delete", all, []*Task{})
			return err
		})
	})

	t.Run("TaskFilters", func(t *testing.T) {
		s := open(t)
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(
				tx.CreateTask(stTask("t3", DomainCFTasks, "cell-2", TaskStateRunning)),
				tx.CreateTask(stTask("t1", DomainCFTasks, "cell-1", TaskStateRunning)),
				tx.CreateTask(stTask("t2", DomainCFTasks, "", TaskStatePending)),
				tx.CreateTask(stTask("t4", "other", "cell-1", TaskStateRunning)),
				tx.CreateTask(stTask("B", "other", "", TaskStateCompleted)),
			)
		})
		for _, tc := range []struct {
			name   string
			filter TasksRequest
			want   []string
		}{
			{"none", TasksRequest{}, []string{"B", "t1", "t2", "t3", "t4"}},
			{"domain", TasksRequest{Domain: DomainCFTasks}, []string{"t1", "t2", "t3"}},
			{"cell", TasksRequest{CellID: "cell-1"}, []string{"t1", "t4"}},
			{"domain and cell", TasksRequest{Domain: "other", CellID: "cell-1"}, []string{"t4"}},
			{"unknown domain", TasksRequest{Domain: "nope"}, []string{}},
			{"unknown cell", TasksRequest{CellID: "cell-9"}, []string{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				stRead(t, s, func(tx StoreTx) error {
					got, err := tx.Tasks(tc.filter)
					if err != nil {
						return err
					}
					if keys := stTaskKeys(got); !reflect.DeepEqual(keys, tc.want) {
						t.Errorf("Tasks(%+v) = %v, want %v", tc.filter, keys, tc.want)
					}
					return nil
				})
			})
		}
	})

	t.Run("TaskNotFoundAndExists", func(t *testing.T) {
		s := open(t)
		first := stTask("dup", DomainCFTasks, "", TaskStatePending)
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateTask(first) })
		for _, tc := range []struct {
			name string
			op   func(tx StoreTx) error
		}{
			{"get", func(tx StoreTx) error { _, err := tx.Task("nope"); return err }},
			{"update", func(tx StoreTx) error { return tx.UpdateTask(stTask("nope", DomainCFTasks, "", TaskStatePending)) }},
			{"delete", func(tx StoreTx) error { return tx.DeleteTask("nope") }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := s.Write(t.Context(), tc.op)
				var e *Error
				if !errors.Is(err, ErrResourceNotFound) || !errors.As(err, &e) || e.Message != `task "nope" does not exist` {
					t.Fatalf("got %v, want ResourceNotFound: task \"nope\" does not exist", err)
				}
			})
		}
		stWrite(t, s, func(tx StoreTx) error {
			second := stTask("dup", "elsewhere", "cell-2", TaskStateRunning)
			if err := tx.CreateTask(second); !errors.Is(err, ErrResourceExists) || err.Error() != `ResourceExists: task "dup" already exists` {
				t.Errorf("second task: got %v, want ResourceExists", err)
			}
			// The transaction goes on after such an error.
			return tx.CreateTask(stTask("other", DomainCFTasks, "", TaskStatePending))
		})
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.Task("dup")
			if err != nil {
				return err
			}
			stEqual(t, "first task kept", got, first)
			all, err := tx.Tasks(TasksRequest{})
			stEqual(t, "tasks", stTaskKeys(all), []string{"dup", "other"})
			return err
		})
	})

	t.Run("TaskRoundTrip", func(t *testing.T) {
		s := open(t)
		task := stRichTask("rich-task")
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateTask(task) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.Task("rich-task")
			if err != nil {
				return err
			}
			stEqual(t, "task", got, task)
			if got.Result != task.Result {
				t.Errorf("result %q, want %q", got.Result, task.Result)
			}
			return nil
		})
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		called := false
		err := s.Write(ctx, func(tx StoreTx) error { called = true; return nil })
		if !errors.Is(err, context.Canceled) || called {
			t.Errorf("Write with a canceled context: %v (f called: %v), want context.Canceled", err, called)
		}
		if err := s.Read(ctx, func(tx StoreTx) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("Read with a canceled context: %v, want context.Canceled", err)
		}
	})
}

// ---------------------------------------------------------------------------
// What is particular to SQLStore. newDSN returns the DSN of a new, empty
// database; opening it twice opens the same database.

func testSQLStore(t *testing.T, newDSN func(t *testing.T) string) {
	t.Run("Reopen", func(t *testing.T) {
		dsn := newDSN(t)
		s, err := OpenSQLStore(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		d := stRichDesired("kept")
		a := stRichActual("kept", 0, stPtr(false))
		stWrite(t, s, func(tx StoreTx) error {
			return errors.Join(tx.CreateDesiredLRP(d), tx.CreateActualLRP(a), tx.UpsertDomain("cf-apps", time.Now().Add(time.Hour)))
		})
		before := stSchemaRows(t, s)
		if len(before) != sqlSchemaVersion || before[len(before)-1][0] != int64(sqlSchemaVersion) {
			t.Fatalf("schema_version rows after the first open: %v, want one row per version up to %d", before, sqlSchemaVersion)
		}
		s.Close()

		for i := range 2 {
			s = stOpen(t, dsn)
			stEqual(t, "schema_version rows after reopening", stSchemaRows(t, s), before)
			stRead(t, s, func(tx StoreTx) error {
				gotD, err1 := tx.DesiredLRP("kept")
				gotA, err2 := tx.ActualLRP("kept", 0)
				doms, err3 := tx.FreshDomains(time.Now())
				if err := errors.Join(err1, err2, err3); err != nil {
					return err
				}
				stEqual(t, fmt.Sprintf("desired LRP after reopening %d times", i+1), gotD, d)
				stEqual(t, "actual LRP after reopening", gotA, a)
				stEqual(t, "domains after reopening", doms, []string{"cf-apps"})
				return nil
			})
			s.Close()
		}
	})

	t.Run("MigratesFromVersion1", func(t *testing.T) {
		// A database the first schema made (before Tasks) gets the tasks
		// table and keeps its records.
		dsn := newDSN(t)
		s := stOpen(t, dsn)
		d := stRichDesired("old")
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(d) })
		for _, stmt := range []string{`DROP TABLE tasks`, `DELETE FROM schema_version WHERE version > 1`} {
			if _, err := s.db.ExecContext(t.Context(), stmt); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()

		s = stOpen(t, dsn)
		if rows := stSchemaRows(t, s); len(rows) != sqlSchemaVersion {
			t.Fatalf("schema_version rows after the upgrade: %v, want %d", rows, sqlSchemaVersion)
		}
		task := stRichTask("after-upgrade")
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateTask(task) })
		stRead(t, s, func(tx StoreTx) error {
			got, err := tx.DesiredLRP("old")
			if err != nil {
				return err
			}
			stEqual(t, "desired LRP kept through the upgrade", got, d)
			gotTask, err := tx.Task("after-upgrade")
			if err != nil {
				return err
			}
			stEqual(t, "task after the upgrade", gotTask, task)
			return nil
		})
	})

	t.Run("NewerSchemaRefused", func(t *testing.T) {
		dsn := newDSN(t)
		s := stOpen(t, dsn)
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(stDesired("d", DomainCFApps)) })
		if _, err := s.db.ExecContext(t.Context(), s.bind(`INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`),
			sqlSchemaVersion+1, time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
		s.Close()

		_, err := OpenSQLStore(t.Context(), dsn)
		if err == nil {
			t.Fatal("opening a database with a newer schema succeeded")
		}
		want := fmt.Sprintf("cannot open the BBS database at %s: its schema is version %d, newer than version %d that this minicf knows",
			sqldb.Redact(dsn), sqlSchemaVersion+1, sqlSchemaVersion)
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("got error\n\t%v\nwant it to start with\n\t%s", err, want)
		}
	})

	t.Run("ConcurrentOpen", func(t *testing.T) {
		dsn := newDSN(t)
		var wg sync.WaitGroup
		stores := make([]*SQLStore, 4)
		errs := make([]error, len(stores))
		for i := range stores {
			wg.Go(func() { stores[i], errs[i] = OpenSQLStore(t.Context(), dsn) })
		}
		wg.Wait()
		for i, s := range stores {
			if errs[i] != nil {
				t.Errorf("open %d: %v", i, errs[i])
				continue
			}
			defer s.Close()
		}
		if t.Failed() {
			return
		}
		if rows := stSchemaRows(t, stores[0]); len(rows) != sqlSchemaVersion {
			t.Errorf("schema_version rows after concurrent opens: %v, want %d", rows, sqlSchemaVersion)
		}
	})

	t.Run("ConcurrentReadsDuringWrite", func(t *testing.T) {
		s := stOpen(t, newDSN(t))
		seed := stDesired("seed", DomainCFApps)
		stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(seed) })

		inWrite, release := make(chan struct{}), make(chan struct{})
		writeDone := make(chan error, 1)
		go func() {
			writeDone <- s.Write(t.Context(), func(tx StoreTx) error {
				if err := tx.CreateDesiredLRP(stDesired("pending", DomainCFApps)); err != nil {
					close(inWrite)
					return err
				}
				seed2 := *seed
				seed2.Instances = 7
				if err := tx.UpdateDesiredLRP(&seed2); err != nil {
					close(inWrite)
					return err
				}
				close(inWrite)
				<-release
				return nil
			})
		}()
		<-inWrite

		// The write holds its transaction open: readers must neither fail
		// nor wait for it, and must not see its changes.
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 10 {
					ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
					err := s.Read(ctx, func(tx StoreTx) error {
						d, err := tx.DesiredLRP("seed")
						if err != nil {
							return err
						}
						if d.Instances != seed.Instances {
							t.Errorf("a reader saw the uncommitted update (instances %d)", d.Instances)
						}
						if _, err := tx.DesiredLRP("pending"); !errors.Is(err, ErrResourceNotFound) {
							t.Errorf("a reader saw the uncommitted create: %v", err)
						}
						_, err = tx.DesiredLRPs(DesiredLRPsRequest{Domain: DomainCFApps})
						return err
					})
					cancel()
					if err != nil {
						t.Errorf("Read during a Write: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(release)
		if err := <-writeDone; err != nil {
			t.Fatalf("the Write: %v", err)
		}
		stRead(t, s, func(tx StoreTx) error {
			ds, err := tx.DesiredLRPs(DesiredLRPsRequest{})
			if err == nil && (len(ds) != 2 || ds[1].Instances != 7) {
				t.Errorf("after the Write committed: %v", stDesiredKeys(ds))
			}
			return err
		})
	})

	t.Run("ConcurrentWritesAndReads", func(t *testing.T) {
		// The BBS serializes its writers, but the store must cope anyway
		// (SQLite: BEGIN IMMEDIATE queues them on busy_timeout).
		s := stOpen(t, newDSN(t))
		const writers, writes = 4, 5
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range writes {
					err := s.Write(t.Context(), func(tx StoreTx) error {
						// Read first, as the BBS does: on SQLite a deferred
						// BEGIN would then fail to upgrade to a write lock
						// (SQLITE_BUSY, with no wait) once another writer
						// has committed.
						if _, err := tx.DesiredLRPs(DesiredLRPsRequest{}); err != nil {
							return err
						}
						g := fmt.Sprintf("w%d-%d", w, i)
						if err := tx.CreateDesiredLRP(stDesired(g, DomainCFApps)); err != nil {
							return err
						}
						return tx.CreateActualLRP(stActual(g, 0, DomainCFApps, "", StateUnclaimed))
					})
					if err != nil {
						t.Errorf("concurrent Write: %v", err)
					}
				}
			})
			wg.Go(func() {
				for range writes {
					if err := s.Read(t.Context(), func(tx StoreTx) error {
						ds, err := tx.DesiredLRPs(DesiredLRPsRequest{})
						if err != nil {
							return err
						}
						// Each write adds both records at once.
						as, err := tx.ActualLRPs(ActualLRPsRequest{})
						if err == nil && len(as) != len(ds) {
							t.Errorf("a reader saw %d desired and %d actual LRPs in one transaction", len(ds), len(as))
						}
						return err
					}); err != nil {
						t.Errorf("concurrent Read: %v", err)
					}
				}
			})
		}
		wg.Wait()
		stRead(t, s, func(tx StoreTx) error {
			ds, err := tx.DesiredLRPs(DesiredLRPsRequest{})
			if err == nil && len(ds) != writers*writes {
				t.Errorf("%d desired LRPs after concurrent writes, want %d", len(ds), writers*writes)
			}
			return err
		})
	})
}

// ---------------------------------------------------------------------------
// SQLStore without a database server.

func TestSQLStoreSQLiteDSNs(t *testing.T) {
	dir := t.TempDir()
	odd := filepath.Join(dir, "a dir with ?#% & 'quotes' and ünïcode")
	if err := os.Mkdir(odd, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dsn, file string // file: where the database must land ("" for memory)
		chdir           bool
	}{
		{"plain path", filepath.Join(dir, "plain.db"), filepath.Join(dir, "plain.db"), false},
		{"sqlite URL", "sqlite://" + filepath.Join(dir, "url.db"), filepath.Join(dir, "url.db"), false},
		{"relative path", "rel.db", "rel.db", true},
		{"relative sqlite URL", "sqlite://relurl.db", "relurl.db", true},
		{"odd path", filepath.Join(odd, "b?d#name%20.db"), filepath.Join(odd, "b?d#name%20.db"), false},
		{"memory", ":memory:", "", false},
		{"memory URL", "sqlite://:memory:", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chdir {
				t.Chdir(dir)
			}
			s := stOpen(t, tc.dsn)
			stWrite(t, s, func(tx StoreTx) error { return tx.CreateDesiredLRP(stDesired("d", DomainCFApps)) })
			wantJournal := "wal"
			if tc.file == "" {
				wantJournal = "memory"
			}
			for _, p := range []struct{ pragma, want string }{
				{"journal_mode", wantJournal}, {"busy_timeout", "5000"}, {"foreign_keys", "1"}, {"synchronous", "1"},
			} {
				var got string
				if err := s.db.QueryRowContext(t.Context(), "PRAGMA "+p.pragma).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != p.want {
					t.Errorf("PRAGMA %s = %s, want %s", p.pragma, got, p.want)
				}
			}
			if tc.file == "" {
				return
			}
			s.Close()
			if _, err := os.Stat(tc.file); err != nil {
				t.Fatalf("the database is not where the DSN says: %v", err)
			}
			s = stOpen(t, tc.dsn)
			stRead(t, s, func(tx StoreTx) error { _, err := tx.DesiredLRP("d"); return err })
		})
	}
}

func TestSQLStoreOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notADB := filepath.Join(dir, "not-a-db")
	if err := os.WriteFile(notADB, bytes.Repeat([]byte("this is not an SQLite database\n"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "a-file")
	if err := os.WriteFile(aFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dsn string
		want      string // the error starts with this
		alsoHas   string
	}{
		{"empty", "", `cannot open the BBS database at "": no database given`, ""},
		{"missing directory", "/nonexistent-minicf-dir/bbs.db",
			"cannot open the BBS database at /nonexistent-minicf-dir/bbs.db: directory /nonexistent-minicf-dir does not exist", ""},
		{"parent is a file", filepath.Join(aFile, "bbs.db"),
			fmt.Sprintf("cannot open the BBS database at %s: %s is not a directory", filepath.Join(aFile, "bbs.db"), aFile), ""},
		{"unknown kind, password hidden", "mysql://bbs:hunter2hunter2@db:3306/bbs",
			`cannot open the BBS database at mysql://bbs:xxxxx@db:3306/bbs: unknown database kind "mysql"`, ""},
		{"file URI", "file:/tmp/bbs.db", "cannot open the BBS database at file:/tmp/bbs.db: SQLite file: URIs are not accepted", ""},
		{"sqlite URL with parameters", "sqlite:///tmp/bbs.db?_pragma=foreign_keys(OFF)",
			"cannot open the BBS database at sqlite:///tmp/bbs.db?_pragma=foreign_keys(OFF): a sqlite:// URL takes only a path", ""},
		{"sqlite URL without path", "sqlite://", "cannot open the BBS database at sqlite://: the sqlite:// URL names no file", ""},
		{"not a database", notADB, "cannot open the BBS database at " + notADB + ": ", "not a database"},
		{"postgres refused, password hidden", "postgres://minicf:hunter2hunter2@127.0.0.1:1/bbs?sslmode=disable&connect_timeout=5",
			"cannot open the BBS database at postgres://minicf:xxxxx@127.0.0.1:1/bbs?sslmode=disable&connect_timeout=5: ", "connect"},
		{"postgres password parameter hidden", "postgresql://minicf@127.0.0.1:1/bbs?password=hunter2hunter2&sslmode=disable",
			"cannot open the BBS database at postgresql://minicf@127.0.0.1:1/bbs?password=xxxxx&sslmode=disable: ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenSQLStore(t.Context(), tc.dsn)
			if err == nil {
				s.Close()
				t.Fatalf("OpenSQLStore(%q) succeeded", tc.dsn)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.want) || !strings.Contains(msg, tc.alsoHas) {
				t.Errorf("got error\n\t%s\nwant it to start with\n\t%s\nand contain %q", msg, tc.want, tc.alsoHas)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("the error shows the password: %s", msg)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Helpers.

func stWrite(t *testing.T, s Store, f func(StoreTx) error) {
	t.Helper()
	if err := s.Write(t.Context(), f); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func stRead(t *testing.T, s Store, f func(StoreTx) error) {
	t.Helper()
	if err := s.Read(t.Context(), f); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

func stEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("%s:\n got %.2000s\nwant %.2000s", what, g, w)
	}
}

func stPtr[T any](v T) *T { return &v }

func stContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func stDesiredKeys(ds []*DesiredLRP) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ProcessGUID)
	}
	return out
}

func stActualKeys(as []*ActualLRP) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s/%d", a.ProcessGUID, a.Index))
	}
	return out
}

func stDesired(guid, domain string) *DesiredLRP {
	return &DesiredLRP{
		ProcessGUID: guid, Domain: domain, Instances: 2, MemoryMB: 256, DiskMB: 1024,
		Action:          &RunAction{Path: "/bin/sh", Args: []string{"-c", "exec ./app"}},
		ModificationTag: ModificationTag{Epoch: "epoch-" + domain, Index: 0},
	}
}

func stActual(guid string, index int32, domain, cell, state string) *ActualLRP {
	a := &ActualLRP{
		ActualLRPKey: ActualLRPKey{ProcessGUID: guid, Index: index, Domain: domain},
		State:        state, Since: 1_700_000_000_123_456_789, Presence: PresenceOrdinary,
		ModificationTag: ModificationTag{Epoch: "e", Index: 3},
	}
	if cell != "" {
		a.ActualLRPInstanceKey = ActualLRPInstanceKey{InstanceGUID: "ig-" + cell, CellID: cell}
	}
	return a
}

func stRichDesired(guid string) *DesiredLRP {
	routes := Routes{}.SetCFRoutes([]CFRoute{
		{Hostnames: []string{"app.example.com"}, Port: 8080},
		{Hostnames: []string{"app.example.com/api"}, Port: 8080, RouteServiceURL: "https://rs.example.com/?a=1&b=<2>",
			IsolationSegment: "iso", Protocol: "http2", Options: map[string]string{"loadbalancing": "least-connection"}},
	})
	routes[RouterKeyTCP] = json.RawMessage(`[{"router_group_guid":"rg-1","external_port":61000,"container_port":8080}]`)
	routes[RouterKeyInternal] = json.RawMessage(`[{"hostname":"app.apps.internal"}]`)
	routes["html"] = json.RawMessage(`{"x":"<b>&amp;</b>"}`)
	return &DesiredLRP{
		ProcessGUID: guid,
		Domain:      DomainCFApps,
		Instances:   3,
		Ports:       []uint32{8080, 2222},
		Routes:      routes,
		LogGUID:     "log-guid",
		MetricTags: map[string]MetricTagValue{
			"source_id":      {Static: "app-guid"},
			"instance_index": {Dynamic: "INDEX"},
			"instance_id":    {Dynamic: "INSTANCE_GUID"},
		},
		Annotation: `{"etag":"abc","note":"quotes \" and 'single'"}`,
		MemoryMB:   512,
		DiskMB:     2048,
		RootFS:     "preloaded:cflinuxfs4",
		Setup:      &DownloadAction{From: "https://blobs.example.com/droplet.tgz?sig=a&b=c", To: "/home/vcap"},
		Action: &RunAction{Path: "/tmp/lifecycle/launcher", Args: []string{"app", "bundle exec rackup", "{}"}, Dir: "/home/vcap",
			Env: []EnvironmentVariable{{Name: "PORT", Value: "8080"}, {Name: "VCAP_APPLICATION", Value: `{"name":"app"}`}}, User: "vcap"},
		CheckDefinition: &CheckDefinition{Checks: []Check{
			{TCPCheck: &TCPCheck{Port: 8080, ConnectTimeoutMs: 1000}},
			{HTTPCheck: &HTTPCheck{Port: 8080, Path: "/health?x=1", RequestTimeoutMs: 2000}},
		}},
		StartTimeoutMs:        60_000,
		CertificateProperties: &CertificateProperties{OrganizationalUnit: []string{"organization:o", "space:s", "app:a"}},
		PlacementTags:         []string{"iso"},
		ModificationTag:       ModificationTag{Epoch: "0b6a3f2c", Index: 4294967295},
	}
}

func stRichActual(guid string, index int32, routable *bool) *ActualLRP {
	return &ActualLRP{
		ActualLRPKey:         ActualLRPKey{ProcessGUID: guid, Index: index, Domain: DomainCFApps},
		ActualLRPInstanceKey: ActualLRPInstanceKey{InstanceGUID: fmt.Sprintf("ig-%d", index), CellID: "cell-z1-0"},
		ActualLRPNetInfo: ActualLRPNetInfo{Address: "10.0.16.4", InstanceAddress: "10.255.7.9", PreferredAddress: "INSTANCE",
			Ports: []PortMapping{{ContainerPort: 8080, HostPort: 61012, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 61013},
				{ContainerPort: 2222, HostPort: 61014}}},
		State:           StateRunning,
		CrashCount:      2,
		CrashReason:     "APP/PROC/WEB: Exited with status 137 (out of memory)",
		PlacementError:  "",
		Since:           -1, // odd but storable
		ModificationTag: ModificationTag{Epoch: "ep", Index: 9},
		Presence:        PresenceEvacuating,
		Routable:        routable,
	}
}

type stSnap struct {
	Desired []*DesiredLRP
	Actual  []*ActualLRP
	Domains []string
	Tasks   []*Task
}

func stSnapshot(t *testing.T, s Store) stSnap {
	t.Helper()
	var snap stSnap
	stRead(t, s, func(tx StoreTx) error {
		var err1, err2, err3, err4 error
		snap.Desired, err1 = tx.DesiredLRPs(DesiredLRPsRequest{})
		snap.Actual, err2 = tx.ActualLRPs(ActualLRPsRequest{})
		snap.Domains, err3 = tx.FreshDomains(time.Unix(0, 0))
		snap.Tasks, err4 = tx.Tasks(TasksRequest{})
		return errors.Join(err1, err2, err3, err4)
	})
	return snap
}

func stSeed(t *testing.T, s Store) {
	t.Helper()
	stWrite(t, s, func(tx StoreTx) error {
		keep := stDesired("keep", DomainCFApps)
		keep.Annotation = "v1"
		return errors.Join(
			tx.CreateDesiredLRP(keep),
			tx.CreateDesiredLRP(stDesired("gone", DomainCFApps)),
			tx.CreateActualLRP(stActual("keep", 0, DomainCFApps, "cell-1", StateRunning)),
			tx.CreateActualLRP(stActual("gone", 0, DomainCFApps, "cell-1", StateRunning)),
			tx.UpsertDomain(DomainCFApps, time.Unix(1000, 0)),
			tx.CreateTask(stTask("keep-task", DomainCFTasks, "", TaskStatePending)),
			tx.CreateTask(stTask("gone-task", DomainCFTasks, "cell-1", TaskStateRunning)),
		)
	})
}

// stChangeEverything makes a change of every kind to what stSeed
// stored.
func stChangeEverything(tx StoreTx) error {
	keep, err := tx.DesiredLRP("keep")
	if err != nil {
		return err
	}
	keep.Annotation = "v2"
	keep.Instances = 9
	a, err := tx.ActualLRP("keep", 0)
	if err != nil {
		return err
	}
	a.State = StateCrashed
	a.CellID = "cell-9"
	errs := []error{
		tx.CreateDesiredLRP(stDesired("new", DomainCFApps)),
		tx.UpdateDesiredLRP(keep),
		tx.DeleteDesiredLRP("gone"),
		tx.UpdateActualLRP(a),
		tx.DeleteActualLRP("gone", 0),
		tx.UpsertDomain(DomainCFApps, time.Unix(2000, 0)),
		tx.UpsertDomain("other", time.Unix(3000, 0)),
	}
	for i := range int32(3) {
		errs = append(errs, tx.CreateActualLRP(stActual("new", i, DomainCFApps, "", StateUnclaimed)))
	}
	task, err := tx.Task("keep-task")
	if err != nil {
		return err
	}
	task.State, task.CellID = TaskStateRunning, "cell-9"
	errs = append(errs, tx.UpdateTask(task), tx.DeleteTask("gone-task"),
		tx.CreateTask(stTask("new-task", DomainCFTasks, "", TaskStatePending)))
	// The changes are visible inside the transaction.
	if ds, err := tx.DesiredLRPs(DesiredLRPsRequest{}); err != nil || len(ds) != 2 || ds[0].Annotation != "v2" {
		errs = append(errs, fmt.Errorf("inside the transaction: %v, %v", stDesiredKeys(ds), err))
	}
	return errors.Join(errs...)
}

// stSchemaRows lists schema_version as (version, applied_at) pairs.
func stSchemaRows(t *testing.T, s *SQLStore) [][2]int64 {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(), `SELECT version, applied_at FROM schema_version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][2]int64
	for rows.Next() {
		var r [2]int64
		if err := rows.Scan(&r[0], &r[1]); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func stTaskKeys(ts []*Task) []string {
	out := []string{}
	for _, task := range ts {
		out = append(out, task.TaskGUID)
	}
	return out
}

func stTask(guid, domain, cell, state string) *Task {
	return &Task{
		TaskGUID: guid, Domain: domain, CellID: cell, State: state,
		TaskDefinition: &TaskDefinition{Action: &RunAction{Path: LifecycleBuilder, Args: []string{"--app-dir", "/home/vcap/app"}},
			MemoryMB: 256, DiskMB: 1024},
		CreatedAt: 1_700_000_000_000_000_000, UpdatedAt: 1_700_000_000_000_000_000,
	}
}

func stRichTask(guid string) *Task {
	return &Task{
		TaskGUID: guid, Domain: DomainCFTasks, State: TaskStateCompleted,
		TaskDefinition: &TaskDefinition{
			RootFS: "preloaded:cflinuxfs4",
			Setup:  &DownloadAction{From: "https://cc.internal/internal/v4/packages/p/download?sig=a&b=<c>", To: "/home/vcap/app"},
			Action: &RunAction{Path: LifecycleBuilder, Args: []string{"--app-dir", "/home/vcap/app", "--command", `sh -c "echo 'hi' && exit 0"`},
				Env: []EnvironmentVariable{{Name: "GOPROXY", Value: "off"}, {Name: "ODD", Value: "ünïcødé\ttab <&>"}}, User: "vcap"},
			MemoryMB: 512, DiskMB: 2048,
			Upload:                &UploadAction{From: "/tmp/droplet.tgz", To: "https://cc.internal/internal/v4/droplets/d/upload"},
			ResultFile:            "/tmp/result.json",
			CompletionCallbackURL: "https://cc.internal/internal/v4/tasks/b/completed",
			LogGUID:               "app-guid", LogSource: "STG", PlacementTags: []string{"iso"}, MaxDurationMs: 900_000,
		},
		Result:    `{"process_types":{"web":"./app <x> & 'y'"},"lifecycle_type":"buildpack"}`,
		Failed:    false,
		CreatedAt: 1, UpdatedAt: 2, FirstCompletedAt: 3,
	}
}
