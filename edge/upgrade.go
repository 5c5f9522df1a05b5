package edge

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/hearth-gateway/hearth/protocol"
)

// Handshake refusals (RFC 6455 §4.2.1), answered with an HTTP status
// before the connection is upgraded.
var (
	errNotWebSocket = errors.New("edge: not a WebSocket upgrade request")
	errWSVersion    = errors.New("edge: WebSocket version 13 required")
	errWSKey        = errors.New("edge: missing or malformed Sec-WebSocket-Key")
)

// acceptKey checks that r is a WebSocket opening handshake this edge
// speaks and returns the Sec-WebSocket-Accept value that answers it.
// The subprotocol is checked separately (offersSubprotocol).
func acceptKey(r *http.Request) (string, error) {
	if r.Method != http.MethodGet ||
		!headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", errNotWebSocket
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", errWSVersion
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return "", errWSKey
	}
	h := sha1.New()
	_, _ = io.WriteString(h, key)
	_, _ = io.WriteString(h, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// headerHasToken reports whether a comma-separated header lists token,
// ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// refuseUpgrade answers a request that is not a handshake the edge
// accepts.
func refuseUpgrade(w http.ResponseWriter, err error) {
	if errors.Is(err, errWSVersion) {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, err.Error(), http.StatusUpgradeRequired)
		return
	}
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// writeUpgrade writes the 101 response that completes the handshake.
func writeUpgrade(w io.Writer, accept string) error {
	_, err := io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+accept+"\r\n"+
		"Sec-WebSocket-Protocol: "+protocol.Subprotocol+"\r\n\r\n")
	return err
}
