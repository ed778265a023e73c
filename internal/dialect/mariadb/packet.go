package mariadb

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// packet returns the size of the largest packet go-sql-driver/mysql sends
// for query with args, and what each arg adds to it.
//
// With interpolateParams=true the driver sends one packet, the statement
// with each var written into it as a literal: quoted, and escaped with
// backslashes unless the sql_mode has NO_BACKSLASH_ESCAPES. Otherwise it
// prepares the statement, one packet of its text, and executes it with
// the vars in binary, in a second. The driver may send a long var of a
// prepared statement in packets of its own (COM_STMT_SEND_LONG_DATA),
// which the server takes as long as each var is within its limit; packet
// counts it in the execute packet all the same, so that whether a write
// is accepted does not depend on the driver's maxAllowedPacket.
func (s settings) packet(query string, args []any) (int, []int) {
	shares := make([]int, len(args))
	if s.interpolated && len(args) > 0 {
		size := 1 + len(query) - len(args) // the command byte, and the text less its placeholders
		quotes := contains(strings.Split(s.sqlMode, ","), "NO_BACKSLASH_ESCAPES")
		for i, a := range args {
			shares[i] = literalSize(value(a), quotes)
			size += shares[i]
		}
		return size, shares
	}
	prepare := 1 + len(query)
	if len(args) == 0 {
		return prepare, shares
	}
	// The command byte, statement ID, flags and iteration count; the NULL
	// bitmap; the new-params flag; and two bytes of type a var.
	execute := 1 + 4 + 1 + 4 + (len(args)+7)/8 + 1
	for i, a := range args {
		shares[i] = 2 + binarySize(value(a))
		execute += shares[i]
	}
	return max(prepare, execute), shares
}

// value returns v as go-sql-driver/mysql binds it: a driver.Value, a
// uint64 or a json.RawMessage.
func value(v any) any {
	for range 8 {
		switch x := v.(type) {
		case nil, int64, uint64, float64, bool, string, []byte, json.RawMessage, time.Time:
			return v
		case driver.Valuer:
			rv := reflect.ValueOf(v)
			if rv.Kind() == reflect.Pointer && rv.IsNil() {
				return nil
			}
			got, err := x.Value()
			if err != nil {
				return v
			}
			v = got
			continue
		}
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Pointer:
			if rv.IsNil() {
				return nil
			}
			v = rv.Elem().Interface()
			continue
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return rv.Int()
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return rv.Uint()
		case reflect.Float32, reflect.Float64:
			return rv.Float()
		case reflect.Bool:
			return rv.Bool()
		case reflect.String:
			return rv.String()
		case reflect.Slice:
			if rv.Type().Elem().Kind() == reflect.Uint8 {
				return rv.Bytes()
			}
		}
		return v
	}
	return v
}

// literalSize is the length of v written into a statement as a literal,
// escaped with backslashes, or by doubling quotes alone when quotes is
// set.
func literalSize(v any, quotes bool) int {
	switch x := v.(type) {
	case nil:
		return len("NULL")
	case int64:
		return len(strconv.FormatInt(x, 10))
	case uint64:
		return len(strconv.FormatUint(x, 10))
	case float64:
		return len(strconv.FormatFloat(x, 'g', -1, 64))
	case bool:
		return 1
	case time.Time:
		return 2 + timeSize(x)
	case string:
		return 2 + escapedSize(x, quotes)
	case json.RawMessage:
		return 2 + escapedSize(string(x), quotes)
	case []byte:
		if x == nil {
			return len("NULL")
		}
		return len("_binary''") + escapedSize(string(x), quotes)
	}
	// A type the driver cannot write into a statement makes it prepare
	// the statement; count the var as its text, escaped, at worst.
	s := reflect.ValueOf(v).String()
	return 2 + 2*len(s)
}

// binarySize is the length of v as the value of a var of a prepared
// statement's execute packet.
func binarySize(v any) int {
	switch x := v.(type) {
	case nil:
		return 0
	case int64, uint64, float64:
		return 8
	case bool:
		return 1
	case time.Time:
		n := timeSize(x)
		return lengthSize(n) + n
	case string:
		return lengthSize(len(x)) + len(x)
	case json.RawMessage:
		return lengthSize(len(x)) + len(x)
	case []byte:
		if x == nil {
			return 0
		}
		return lengthSize(len(x)) + len(x)
	}
	s := reflect.ValueOf(v).String()
	return lengthSize(len(s)) + len(s)
}

// escapedSize is the length of s escaped as the driver escapes a string
// literal.
func escapedSize(s string, quotes bool) int {
	if quotes {
		return len(s) + strings.Count(s, "'")
	}
	n := len(s)
	for _, c := range []string{"\x00", "\n", "\r", "\x1a", "'", `"`, `\`} {
		n += strings.Count(s, c)
	}
	return n
}

// timeSize is the length of the text the driver writes a time as:
// "2006-01-02 15:04:05" and its fraction of a second, without trailing
// zeros; at midnight in the driver's zone the date alone, which is
// shorter, and which the zone decides, so it is not counted.
func timeSize(t time.Time) int {
	if t.IsZero() {
		return len("0000-00-00")
	}
	ns := t.Nanosecond()
	if ns == 0 {
		return len("2006-01-02 15:04:05")
	}
	digits := 9
	for ns%10 == 0 {
		ns /= 10
		digits--
	}
	return len("2006-01-02 15:04:05.") + digits
}

// lengthSize is the length of the length-encoded integer n.
func lengthSize(n int) int {
	switch {
	case n <= 250:
		return 1
	case n <= 0xffff:
		return 3
	case n <= 0xffffff:
		return 4
	}
	return 9
}

// packetTooLarge recognises the refusal of a statement larger than the
// server's max_allowed_packet: by the server, which then closes the
// connection (ER_NET_PACKET_TOO_LARGE), or for a var sent apart as long
// data, or by the driver, before sending it, when its own maxAllowedPacket
// is the smaller.
func packetTooLarge(err error) bool {
	if errors.Is(err, mysql.ErrPktTooLarge) {
		return true
	}
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) {
		return false
	}
	return myErr.Number == 1153 || myErr.Number == 1105 && strings.Contains(myErr.Message, "max_allowed_packet")
}
