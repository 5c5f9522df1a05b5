// Package e2e holds Hearth's end-to-end tests: the TLS tier, edges and hubs
// started on port 0 against a real RabbitMQ (and, with the same tests, the
// in-process broker), driven by real WebSocket clients over real sockets.
// It has no non-test code beyond this comment.
package e2e
