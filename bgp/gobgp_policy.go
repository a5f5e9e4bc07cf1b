package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

const (
	importPolicyName = "baremetal-ccm-import"
	exportPolicyName = "baremetal-ccm-export"
)

func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// importPolicy accepts only our own (local) paths: routes received from
// routers never enter the RIB. Global policies apply to local paths too,
// hence the explicit accept.
func importPolicy() *api.Policy {
	return &api.Policy{
		Name: importPolicyName,
		Statements: []*api.Statement{{
			Name:       importPolicyName + "-local",
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		}},
	}
}

// exportPrefixSets are the prefix sets of p.ExportPrefixes, one per
// family (a GoBGP prefix set holds one family): every prefix within one of
// them, up to host routes.
func exportPrefixSets(p *routingPolicy) (sets []*api.DefinedSet) {
	byFamily := map[string][]*api.Prefix{}
	for _, pf := range p.ExportPrefixes {
		name := "export-prefixes-v6"
		if pf.Addr().Is4() {
			name = "export-prefixes-v4"
		}
		byFamily[name] = append(byFamily[name], &api.Prefix{
			IpPrefix:      pf.Masked().String(),
			MaskLengthMin: uint32(pf.Bits()),
			MaskLengthMax: uint32(pf.Addr().BitLen()),
		})
	}
	for _, name := range []string{"export-prefixes-v4", "export-prefixes-v6"} {
		if l := byFamily[name]; len(l) > 0 {
			sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: name, Prefixes: l})
		}
	}
	return sets
}

// policies builds the complete policy configuration: the import policy,
// and one global export policy with, per family that has export
// prefixes, one statement per rack that has routers (neighbor set of those
// routers AND the rack's marker AND the family's export prefixes) plus one
// for the routers without a rack (neighbor set AND export prefixes).
// Every accepting statement strips the markers and resets the MED. The
// default export action is REJECT: without export prefixes nothing is
// exported.
func policies(p *routingPolicy) *api.SetPoliciesRequest {
	accept := func() *api.Actions {
		return &api.Actions{
			RouteAction: api.RouteAction_ACCEPT,
			LargeCommunity: &api.CommunityAction{
				Type:        api.CommunityAction_REMOVE,
				Communities: []string{fmt.Sprintf(`^%d:%d:\d+$`, p.ASN, markerTag)},
			},
			Med: &api.MedAction{Type: api.MedAction_REPLACE, Value: 0},
		}
	}
	req := &api.SetPoliciesRequest{}
	export := &api.Policy{Name: exportPolicyName}
	prefixSets := exportPrefixSets(p)
	req.DefinedSets = append(req.DefinedSets, prefixSets...)
	statement := func(name, neighbors, marker string) {
		for _, ps := range prefixSets {
			c := &api.Conditions{
				NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: neighbors},
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: ps.Name},
			}
			if marker != "" {
				c.LargeCommunitySet = &api.MatchSet{Type: api.MatchSet_ANY, Name: marker}
			}
			export.Statements = append(export.Statements, &api.Statement{Name: name + "-" + ps.Name, Conditions: c, Actions: accept()})
		}
	}
	// Empty neighbor sets match every neighbor in GoBGP: only non-empty
	// ones become statements.
	if len(p.Rackless) > 0 {
		req.DefinedSets = append(req.DefinedSets, &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: "peers-all-nodes", List: hostPrefixes(p.Rackless)})
		statement("all-nodes", "peers-all-nodes", "")
	}
	for _, r := range p.Racks {
		idx := strconv.FormatUint(uint64(r.Marker.Local2), 10)
		req.DefinedSets = append(req.DefinedSets,
			&api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: "peers-rack-" + idx, List: hostPrefixes(r.Routers)},
			&api.DefinedSet{DefinedType: api.DefinedType_LARGE_COMMUNITY, Name: "marker-rack-" + idx,
				List: []string{r.Marker.String(), marker(p.ASN, allRacksMarker).String()}},
		)
		statement("rack-"+idx, "peers-rack-"+idx, "marker-rack-"+idx)
	}
	req.Policies = []*api.Policy{importPolicy(), export}
	return req
}

func hostPrefixes(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = hostPrefix(a)
	}
	return out
}

func assignPolicies(ctx context.Context, bgp *server.BgpServer) error {
	for _, a := range []*api.PolicyAssignment{
		{Name: "global", Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: importPolicyName}}, DefaultAction: api.RouteAction_REJECT},
		{Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: exportPolicyName}}, DefaultAction: api.RouteAction_REJECT},
	} {
		if err := bgp.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a}); err != nil {
			return fmt.Errorf("assigning the %s policy: %w", a.Direction, err)
		}
	}
	return nil
}
