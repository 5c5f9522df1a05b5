//go:build unix

package testenv

import (
	"os"
	"syscall"
)

// The lock calls never block: callers poll with a deadline. On Linux a
// failed conversion from shared to exclusive may drop the shared lock; the
// callers retry until they hold the lock they asked for.

func lockShared(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
}

func lockExclusive(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func unlock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
