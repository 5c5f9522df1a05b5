//go:build !unix

package testenv

import "os"

// Without flock, test processes do not coordinate broker restarts.

func lockShared(*os.File) error    { return nil }
func lockExclusive(*os.File) error { return nil }
func unlock(*os.File) error        { return nil }
