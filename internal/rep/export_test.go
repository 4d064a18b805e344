package rep

// For the external tests (package rep_test): the binaries TestMain built.
func BuiltBinaries() (minicf, lifecycle string) { return minicfBin, lifecycleBin }
