package scheduler

import (
	"encoding/base64"

	"nimbus/rpc"
)

// Receipt handles: opaque to clients, they carry a message's id and the
// random nonce of the receive that delivered it (QueueMessage.Receipt).
// Apply accepts a delete or a visibility change only with the nonce the
// message holds now, so a handle cannot be forged (the nonce is 128 random
// bits) and a stale one (from an earlier receive) is refused.
//
//	handle = base64url(version byte 1 | 16-byte nonce | message id)

const maxReceiptHandle = 512

// EncodeReceipt returns the receipt handle of a message id and nonce.
func EncodeReceipt(id string, nonce []byte) string {
	b := make([]byte, 0, 1+len(nonce)+len(id))
	b = append(b, 1)
	b = append(b, nonce...)
	b = append(b, id...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeReceipt reads a receipt handle a client sent; any handle that is
// not one EncodeReceipt makes is ReceiptHandleIsInvalid.
func DecodeReceipt(s string) (id string, nonce []byte, err error) {
	bad := rpc.Errorf(rpc.CodeReceiptHandleIsInvalid, "The input receipt handle %q is not a valid receipt handle.", truncate(s, 64))
	if len(s) == 0 || len(s) > maxReceiptHandle {
		return "", nil, bad
	}
	for i := 0; i < len(s); i++ {
		// The decoder skips newlines: refuse anything outside the alphabet.
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", nil, bad
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) < 2+receiptNonceLen || len(b) > 1+receiptNonceLen+128 || b[0] != 1 {
		return "", nil, bad
	}
	id = string(b[1+receiptNonceLen:])
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return "", nil, bad
		}
	}
	return id, b[1 : 1+receiptNonceLen], nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
