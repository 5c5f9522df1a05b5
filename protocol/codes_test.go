package protocol_test

import (
	"testing"

	"github.com/hearth-gateway/hearth/protocol"
)

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code      protocol.ErrorCode
		num       uint16
		name      string
		retryable bool
	}{
		{protocol.CodeBadFrame, 400, "bad_frame", false},
		{protocol.CodeForbidden, 403, "forbidden", false},
		{protocol.CodeNotMember, 404, "not_member", true},
		{protocol.CodeUnknownType, 405, "unknown_type", false},
		{protocol.CodeTooLarge, 413, "too_large", false},
		{protocol.CodeMissingField, 420, "missing_field", false},
		{protocol.CodeInvalidRoom, 422, "invalid_room", false},
		{protocol.CodeTooManyRooms, 423, "too_many_rooms", true},
		{protocol.CodeRateLimited, 429, "rate_limited", true},
		{protocol.CodeInternal, 500, "internal", true},
		{protocol.CodeUnavailable, 503, "unavailable", true},
		{0, 0, "code_0", false},
		{418, 418, "code_418", false},
		{504, 504, "code_504", false},
	}
	for _, tt := range tests {
		if uint16(tt.code) != tt.num {
			t.Errorf("%s = %d, want %d", tt.name, tt.code, tt.num)
		}
		if got := tt.code.String(); got != tt.name {
			t.Errorf("ErrorCode(%d).String() = %q, want %q", tt.num, got, tt.name)
		}
		if got := tt.code.Retryable(); got != tt.retryable {
			t.Errorf("ErrorCode(%d).Retryable() = %v, want %v", tt.num, got, tt.retryable)
		}
	}
}

func TestCloseCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code       uint16
		num        uint16
		reconnects bool
	}{
		{protocol.CloseNormal, 1000, false},
		{protocol.CloseGoingAway, 1001, true},
		{protocol.CloseProtocolError, 1002, false},
		{protocol.CloseInvalidData, 1007, true},
		{protocol.ClosePolicy, 1008, true},
		{protocol.CloseTooBig, 1009, true},
		{protocol.CloseInternal, 1011, true},
		{protocol.CloseSlowConsumer, 4001, true},
		{protocol.CloseHeartbeat, 4002, true},
		{protocol.CloseTokenExpired, 4003, true},
		// Codes Hearth does not name: reconnect (an abnormal closure, 1006,
		// is what a client sees when the network drops).
		{1006, 1006, true},
		{1010, 1010, true},
		{4999, 4999, true},
	}
	for _, tt := range tests {
		if tt.code != tt.num {
			t.Errorf("close code constant %d, want %d", tt.code, tt.num)
		}
		if got := protocol.CloseReconnects(tt.code); got != tt.reconnects {
			t.Errorf("CloseReconnects(%d) = %v, want %v", tt.code, got, tt.reconnects)
		}
	}
}

func TestDrainReason(t *testing.T) {
	t.Parallel()
	for ms, want := range map[int]string{0: "reconnect=0", 2000: "reconnect=2000", 30000: "reconnect=30000"} {
		if got := protocol.DrainReason(ms); got != want {
			t.Errorf("DrainReason(%d) = %q, want %q", ms, got, want)
		}
	}
	// A close frame's reason is at most 123 bytes.
	if n := len(protocol.DrainReason(1 << 62)); n > 123 {
		t.Errorf("drain reason of %d bytes does not fit a close frame", n)
	}
}

func TestFrameError(t *testing.T) {
	t.Parallel()
	fe := &protocol.FrameError{Code: protocol.CodeInvalidRoom, Text: "bad"}
	if got := fe.Error(); got != "invalid_room: bad" {
		t.Fatalf("Error() = %q", got)
	}
}
