package repository

import "context"

// SetMaxPacket makes r, which has read its server's settings, take n as
// the server's max_allowed_packet, as a Repository does whose server's
// limit changed after it read it.
func SetMaxPacket(r *Repository, n int) {
	read := r.server.session.Load()
	if read == nil {
		panic("SetMaxPacket: the Repository has not read its server's settings")
	}
	s := *read
	s.MaxPacket = n
	r.server.session.Store(&s)
}

// MissingParent is the error r's CreateAgentInvocation returns for in when
// its insert failed on the foreign key constraint, "" where the database
// did not say which.
func MissingParent(ctx context.Context, r *Repository, in NewAgentInvocation, constraint string) error {
	return r.missingParent(ctx, in, constraint)
}
