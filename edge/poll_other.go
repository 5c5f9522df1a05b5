//go:build !linux

package edge

import "errors"

// poller exists on Linux only (epoll); elsewhere every connection is read
// by a goroutine of its own.
type poller struct{}

func newPoller() (*poller, error) {
	return nil, errors.New("edge: readiness polling needs Linux")
}

func (*poller) add(*conn) error   { return errNoRawConn }
func (*poller) rearm(*conn) error { return errNoRawConn }
func (*poller) remove(*conn)      {}
func (*poller) run(func(*conn))   {}
func (*poller) stop()             {}
