package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
)

// fakeRouter implements the router seam in memory, for tests of the
// speaker's reconciliation that need no GoBGP.
type fakeRouter struct {
	global  routerGlobal
	onState func(peerEvent)

	mu      sync.Mutex
	peers   map[netip.Addr]neighbor
	states  map[netip.Addr]peerState
	policy  routingPolicy
	paths   map[fakePathKey]routePath
	ops     []string // every change, in order
	fail    map[string]error
	stopped bool
}

type fakePathKey struct {
	prefix netip.Prefix
	id     uint32
}

var _ router = (*fakeRouter)(nil)

func newFakeRouter() *fakeRouter {
	return &fakeRouter{
		peers:  map[netip.Addr]neighbor{},
		states: map[netip.Addr]peerState{},
		paths:  map[fakePathKey]routePath{},
		fail:   map[string]error{},
	}
}

// op records a change, or fails it when failOn asked for it.
func (f *fakeRouter) op(kind, what string) error {
	if err := f.fail[kind]; err != nil {
		return err
	}
	f.ops = append(f.ops, kind+" "+what)
	return nil
}

func (f *fakeRouter) addPeer(_ context.Context, n neighbor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("addPeer", n.Name); err != nil {
		return err
	}
	f.peers[n.Address] = n
	return nil
}

func (f *fakeRouter) deletePeer(_ context.Context, addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("deletePeer", f.peers[addr].Name); err != nil {
		return err
	}
	delete(f.peers, addr)
	return nil
}

func (f *fakeRouter) listPeers(context.Context) ([]peerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []peerState
	for a := range f.peers {
		st, ok := f.states[a]
		if !ok {
			st = peerState{Address: a, State: StateActive}
		}
		out = append(out, st)
	}
	return out, nil
}

func (f *fakeRouter) setPolicy(_ context.Context, p routingPolicy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("setPolicy", ""); err != nil {
		return err
	}
	f.policy = p
	return nil
}

func (f *fakeRouter) addPath(_ context.Context, p routePath) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("addPath", fmt.Sprintf("%s#%d", p.Attrs.Prefix, p.ID)); err != nil {
		return err
	}
	f.paths[fakePathKey{p.Attrs.Prefix, p.ID}] = p
	return nil
}

func (f *fakeRouter) deletePath(_ context.Context, p routePath) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakePathKey{p.Attrs.Prefix, p.ID}
	if _, ok := f.paths[k]; !ok {
		return fmt.Errorf("no path %v", k)
	}
	if err := f.op("deletePath", fmt.Sprintf("%s#%d", p.Attrs.Prefix, p.ID)); err != nil {
		return err
	}
	delete(f.paths, k)
	return nil
}

func (f *fakeRouter) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
}

// failOn makes every later call of kind fail with err (nil: succeed).
func (f *fakeRouter) failOn(kind string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[kind] = err
}

// takeOps returns the changes since the last call.
func (f *fakeRouter) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := f.ops
	f.ops = nil
	sort.Strings(ops)
	return ops
}

// announced is the router's paths: prefix -> "id:next hop[:marker rack index]", sorted.
func (f *fakeRouter) announced() map[netip.Prefix][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[netip.Prefix][]string{}
	for k, p := range f.paths {
		s := fmt.Sprintf("%d:%s", k.id, p.NextHop)
		if p.hasMarker() {
			s += fmt.Sprintf(":m%d", p.Marker.Local2)
		}
		out[k.prefix] = append(out[k.prefix], s)
	}
	for _, l := range out {
		slices.Sort(l)
	}
	return out
}

// fakeRouters hands out fake routers to a speaker, one per start.
type fakeRouters struct {
	mu      sync.Mutex
	started []*fakeRouter
	// block, when not nil, holds every start until it is closed.
	block chan struct{}
	fail  error
}

func (fr *fakeRouters) start(ctx context.Context, g routerGlobal, onState func(peerEvent)) (router, error) {
	fr.mu.Lock()
	block, fail := fr.block, fr.fail
	fr.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	r := newFakeRouter()
	r.global, r.onState = g, onState
	fr.mu.Lock()
	fr.started = append(fr.started, r)
	fr.mu.Unlock()
	return r, nil
}

func (fr *fakeRouters) last() *fakeRouter {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return fr.started[len(fr.started)-1]
}

// startFakeSpeaker starts a speaker on fake routers; t.Cleanup stops it.
func startFakeSpeaker(t *testing.T, cfg Config) (*Speaker, *fakeRouters) {
	t.Helper()
	if cfg.ASN == 0 {
		cfg.ASN = speakerASN
	}
	if !cfg.RouterID.IsValid() {
		cfg.RouterID = netip.MustParseAddr("192.0.2.1")
	}
	if cfg.ExportPrefixes == nil {
		cfg.ExportPrefixes = testExportPrefixes
	}
	fr := &fakeRouters{}
	s, err := newSpeaker(testContext(t), cfg, fr.start)
	if err != nil {
		t.Fatalf("newSpeaker() = %v", err)
	}
	t.Cleanup(s.Stop)
	return s, fr
}

func fakePeer(name, addr, rack string) Peer {
	return Peer{Name: name, Address: netip.MustParseAddr(addr), ASN: routerASN, Rack: rack}
}

func manyCommunities(n int) []Community {
	out := make([]Community, n)
	for i := range out {
		out[i] = Community(65000<<16 | uint32(i))
	}
	return out
}

var errRouter = errors.New("router failure")
