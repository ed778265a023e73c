package dbtest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 to a test server, for tests of a
// server or a network that misbehaves. It forwards each connection it
// accepts to the server, and closes one side when the other ends, unless
// it is frozen or holds new connections.
type Proxy struct {
	ln     net.Listener
	server string
	frozen atomic.Bool
	hold   atomic.Int64 // a time.Duration
	// hungUp counts the connections accepted while frozen that their
	// client closed; holding, those held and not yet connected.
	hungUp, holding atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

// NewProxy starts a Proxy to the server at addr, a host:port, and closes
// it, with every connection it made, when tb ends.
func NewProxy(tb testing.TB, addr string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: %v", err)
	}
	p := &Proxy{ln: ln, server: addr}
	tb.Cleanup(p.Close)
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			p.keep(client)
			go p.serve(client)
		}
	}()
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze makes the proxy go silent, as a server or a network that went
// away without closing anything, or speak again: while frozen it forwards
// nothing either way, connects no new client to the server, and closes no
// connection.
func (p *Proxy) Freeze(frozen bool) { p.frozen.Store(frozen) }

// Hold makes the proxy hold each connection it accepts from now on for d
// before it connects it to the server, as a loaded server is slow to
// accept one; 0 stops it.
func (p *Proxy) Hold(d time.Duration) { p.hold.Store(int64(d)) }

// HungUp returns how many connections accepted while frozen their client
// has closed.
func (p *Proxy) HungUp() int64 { return p.hungUp.Load() }

// Holding returns how many connections the proxy holds, not yet connected
// to the server.
func (p *Proxy) Holding() int64 { return p.holding.Load() }

// Close stops the proxy and closes every connection it made.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// serve forwards client to a connection of its own to the server.
func (p *Proxy) serve(client net.Conn) {
	if p.frozen.Load() {
		p.forward(nil, client)
		p.hungUp.Add(1)
		return
	}
	if hold := time.Duration(p.hold.Load()); hold > 0 {
		p.holding.Add(1)
		time.Sleep(hold)
		p.holding.Add(-1)
	}
	server, err := net.Dial("tcp", p.server)
	if err != nil {
		_ = client.Close()
		return
	}
	p.keep(server)
	go p.forward(server, client)
	p.forward(client, server)
}

// forward copies from src to dst, nil to read and drop, until src ends,
// dropping what it reads while frozen; then it closes dst unless frozen.
func (p *Proxy) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if dst != nil && !p.frozen.Load() {
				_ = dst.Close()
			}
			return
		}
		if dst == nil || p.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *Proxy) keep(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}
