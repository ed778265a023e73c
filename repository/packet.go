package repository

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/agentpipeline/persistence/internal/dialect"
)

// fit returns a *packetError when st, sent with the call's vars, would be
// larger than the largest packet the server takes. It refuses only against
// a limit read again, so that a limit raised since the Repository read it
// refuses nothing it should take.
func (r *Repository) fit(ctx context.Context, st *dialect.Statement, vars []any) error {
	s := r.server.session.Load()
	if s == nil || s.MaxPacket == 0 {
		return nil
	}
	args := st.Args(vars)
	if size, _ := s.Packet(st.SQL, args); size < s.MaxPacket {
		return nil
	}
	s, err := r.readSession(ctx)
	if err != nil {
		return err
	}
	size, shares := s.Packet(st.SQL, args)
	if size < s.MaxPacket {
		return nil
	}
	// The var at fault is the one without which the statement would fit,
	// if there is one and only one.
	share := make([]int, len(vars))
	for i, n := range shares {
		v := i
		if st.Vars != nil {
			v = st.Vars[i]
		}
		share[v] += n
	}
	at := -1
	for v, n := range share {
		if n > 0 && size-n < s.MaxPacket {
			if at >= 0 {
				at = -1
				break
			}
			at = v
		}
	}
	return &packetError{size: size, limit: s.MaxPacket, arg: at}
}

// packetError is the error of a statement larger than the largest packet
// the server takes, refused before it was sent or by the server; the write
// method turns it into an *InputError naming its arguments (see
// tooLarge).
type packetError struct {
	// size is the statement's size and limit the server's, in bytes,
	// where the Repository refused it; refused is the error with which the
	// server or the driver refused it otherwise.
	size, limit int
	refused     error
	// arg is the call's var without which the statement would fit, or
	// -1 when there is none, or more than one.
	arg int
}

func (e *packetError) Error() string {
	if e.refused != nil {
		return "larger than the server's max_allowed_packet: " + e.refused.Error()
	}
	return strconv.Itoa(e.size) + " bytes as sent, where the server's max_allowed_packet takes less than " + strconv.Itoa(e.limit) + " bytes"
}

// tooLarge turns a *packetError err into an *InputError: naming the
// field that each names the call's var at fault, if one is, or else the
// call's arguments together, all. It returns any other err as it is.
//
// Only MariaDB refuses writes for their size as a whole: there a
// statement and its arguments, as the driver sends them, must fit in
// max_allowed_packet.
func tooLarge(err error, all string, each ...string) error {
	if err == nil {
		return nil
	}
	var pe *packetError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case pe.refused != nil:
		return &InputError{Field: all, Reason: "the write was refused as " + pe.Error()}
	case pe.arg >= 0 && pe.arg < len(each) && each[pe.arg] != "":
		return &InputError{Field: each[pe.arg], Reason: fmt.Sprintf("with the write's other arguments, %s", pe)}
	}
	return &InputError{Field: all, Reason: fmt.Sprintf("together, %s", pe)}
}
