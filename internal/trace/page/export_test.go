package page

import "io/fs"

// Static is the embedded files, for the tests.
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return sub
}
