package config

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// peerRacks checks that the racks a peer names exist: the rack whose
// paths it gets, and the racks whose replicas peer with it (dialFrom).
func peerRacks(path *field.Path, p bgp.PeerFile, cfg *Config) field.ErrorList {
	var errs field.ErrorList
	unknown := func(fp *field.Path, rack string) {
		if _, ok := cfg.Rack(rack); !ok && rack != "" {
			errs = append(errs, field.Invalid(fp, rack, fmt.Sprintf("no such rack; known racks: %s", strings.Join(rackNames(cfg.Racks), ", "))))
		}
	}
	unknown(path.Child("rack"), p.Rack)
	if p.DialFrom != nil {
		for i, r := range p.DialFrom.Racks {
			unknown(path.Child("dialFrom", "racks").Index(i), r)
		}
	}
	return errs
}
