package cc

import (
	"testing"
	"time"
)

// The API suite runs on SQLite and, when MINICF_TEST_POSTGRES_URL is set,
// on PostgreSQL: every case gets a fresh database.
var suite = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"RootDocument", testRootDocument},
	{"Auth", testAuth},
	{"OrgsSpacesDomains", testOrgsSpacesDomains},
	{"Pagination", testPagination},
	{"BadInput", testBadInput},
	{"AppsCRUD", testAppsCRUD},
	{"Processes", testProcesses},
	{"Routes", testRoutes},
	{"RouteValidation", testRouteValidation},
	{"Destinations", testDestinations},
	{"ApplyManifestRoutes", testApplyManifestRoutes},
	{"ApplyManifestFields", testApplyManifestFields},
	{"ApplyManifestFailures", testApplyManifestFailures},
	{"PackageUpload", testPackageUpload},
	{"PackageUploadRejected", testPackageUploadRejected},
	{"Staging", testStaging},
	{"StagingFailures", testStagingFailures},
	{"StartStopDelete", testStartStopDelete},
	{"DesiredLRPGolden", testDesiredLRPGolden},
	{"RouteMappingUpdatesLRP", testRouteMappingUpdatesLRP},
	{"ScaleUpdatesLRP", testScaleUpdatesLRP},
	{"SyncRepairsDrift", testSyncRepairsDrift},
	{"ProcessStats", testProcessStats},
	{"Jobs", testJobs},
	{"Buildpacks", testBuildpacks},
	{"AppBuildpackChoice", testAppBuildpackChoice},
	{"ApplyManifestBuildpacks", testApplyManifestBuildpacks},
	{"StagingWithChosenBuildpacks", testStagingWithChosenBuildpacks},
}

func runSuite(t *testing.T, dsn func(*testing.T) string) {
	start := time.Now()
	t.Cleanup(func() { t.Logf("suite took %v", time.Since(start).Round(time.Millisecond)) })
	for _, c := range suite {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newEnv(t, dsn(t)))
		})
	}
}

func TestCCOnSQLite(t *testing.T) { runSuite(t, testSQLiteDSN) }

func TestCCOnPostgres(t *testing.T) { runSuite(t, postgresDSNs(t)) }
