// Package config reads and validates the cloud config file: the region, the
// racks with their subnets, the machine inventory, the address pools, the BGP
// speaker and the node health check. The sections of the packages that use
// them (ipam, bgp, health) are parsed by those packages; this one checks what
// spans sections, and parses the pod routes (routes.go).
//
// Every problem in a file is reported at once, each with its field path, the
// offending value and what would be valid, so that an operator fixes a
// ConfigMap in one round instead of one error per restart.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/health"
)

// DefaultInstanceType is the instance type of a machine whose inventory entry
// names none, and of every Node when there is no inventory.
const DefaultInstanceType = "baremetal"

// Machine states in the inventory.
const (
	StateRunning  = "running"
	StateShutdown = "shutdown"
)

// File is the cloud config file as written by the operator (YAML).
type File struct {
	Region      string             `json:"region"`
	Racks       []RackFile         `json:"racks,omitempty"`
	Machines    []MachineFile      `json:"machines,omitempty"`
	Pools       []ipam.PoolConfig  `json:"pools,omitempty"`
	BGP         *bgp.ConfigFile    `json:"bgp,omitempty"`
	HealthCheck *health.ConfigFile `json:"healthCheck,omitempty"`
	Routes      *RoutesFile        `json:"routes,omitempty"`
}

// RackFile is one entry of `racks:`.
type RackFile struct {
	Name    string   `json:"name"`
	Zone    string   `json:"zone,omitempty"`
	Subnets []string `json:"subnets,omitempty"`
}

// MachineFile is one entry of `machines:`, the cloud's inventory.
type MachineFile struct {
	Name      string   `json:"name"`
	Rack      string   `json:"rack,omitempty"`
	Type      string   `json:"type,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	State     string   `json:"state,omitempty"`
}

// Config is a validated cloud config with every default applied.
type Config struct {
	Region string
	Racks  []Rack
	// Machines is the inventory; nil when the file has none, in which case
	// every Node is a running machine.
	Machines map[string]Machine
	// Pools are the address pools, in configuration order.
	Pools []ipam.Pool
	// BGP is the speaker's configuration; BGP.ASN is 0 when the file has
	// no bgp section, and BGP.RouterID is invalid when the file leaves it
	// to the process (see the --bgp-router-id flag).
	BGP bgp.Config
	// HealthCheck is the node health check, with defaults applied.
	HealthCheck health.Config
	// Routes are the pod routes; Routes.Enabled is false without the
	// section.
	Routes Routes
	// Warnings are settings that are valid but probably not what the
	// operator wants, each a sentence that starts with its field path.
	// The binary logs them when it loads the file.
	Warnings []string
}

// PasswordFiles returns the files the config names as BGP passwords: a
// change of their content must be applied as a change of the config.
func (c *Config) PasswordFiles() []string {
	var files []string
	for _, p := range c.BGP.Peers {
		if p.PasswordFile != "" && !slices.Contains(files, p.PasswordFile) {
			files = append(files, p.PasswordFile)
		}
	}
	return files
}

// Rack is a top-of-rack domain: the nodes whose addresses lie in its subnets.
type Rack struct {
	Name    string
	Zone    string
	Subnets []netip.Prefix
}

// Machine is one inventory entry.
type Machine struct {
	Name string
	// Rack is empty when neither the file names it nor one of the inventory
	// addresses lies in a rack's subnets; it is then derived from the Node's
	// own addresses.
	Rack      string
	Type      string
	Addresses []netip.Addr
	State     string
}

// HasInventory tells whether the config lists machines. Without an
// inventory, no Node may ever be reported as gone.
func (c *Config) HasInventory() bool { return c.Machines != nil }

// Rack returns the rack with this name.
func (c *Config) Rack(name string) (Rack, bool) {
	i := slices.IndexFunc(c.Racks, func(r Rack) bool { return r.Name == name })
	if i < 0 {
		return Rack{}, false
	}
	return c.Racks[i], true
}

// RackOf returns the rack whose subnets hold addr.
func (c *Config) RackOf(addr netip.Addr) (Rack, bool) {
	addr = addr.Unmap()
	for _, r := range c.Racks {
		for _, s := range r.Subnets {
			if s.Contains(addr) {
				return r, true
			}
		}
	}
	return Rack{}, false
}

// Load reads and validates a cloud config file: a regular file of at most
// [MaxFileSize] bytes. When the file is invalid, the error wraps an
// [*InvalidError] that lists every problem.
func Load(path string) (*Config, error) {
	data, err := ReadFile(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("reading cloud config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cloud config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML strictly and validates it. A key given twice, an
// unknown field and a value of the wrong type are problems like any other:
// the error, an [*InvalidError], lists them all together. Only YAML that
// cannot be read at all is reported alone.
func Parse(data []byte) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the file is empty: at least `region` is required")
	}
	f, problems, dropped, err := decode(data)
	if err != nil {
		return nil, err
	}
	cfg, errs := f.Validate()
	// A value left out for its type is reported once: the problems
	// validation then finds at or below its path follow from it.
	for _, e := range errs {
		if !slices.ContainsFunc(dropped, func(p string) bool { return under(e.Field, p) }) {
			problems = append(problems, e)
		}
	}
	if len(problems) > 0 {
		return nil, &InvalidError{Problems: problems}
	}
	return cfg, nil
}

// InvalidError lists every problem of a cloud config file, each with its
// field path, the offending value and what would be valid.
type InvalidError struct {
	Problems field.ErrorList
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	// One problem per line: the operator sees every one at once.
	fmt.Fprintf(&b, "%d problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n")
		b.WriteString(p.Error())
	}
	return b.String()
}

// under tells whether field path p is path or lies below it.
func under(p, path string) bool {
	rest, ok := strings.CutPrefix(p, path)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// Validate checks every field and returns the config with defaults applied,
// or every problem found.
func (f *File) Validate() (*Config, field.ErrorList) {
	var errs field.ErrorList
	cfg := &Config{Region: f.Region}

	if f.Region == "" {
		errs = append(errs, field.Required(field.NewPath("region"), "the topology.kubernetes.io/region of every machine"))
	} else {
		errs = append(errs, labelValue(field.NewPath("region"), f.Region)...)
	}

	var rackErrs field.ErrorList
	cfg.Racks, rackErrs = validateRacks(f.Racks, field.NewPath("racks"))
	errs = append(errs, rackErrs...)

	var machineErrs field.ErrorList
	cfg.Machines, machineErrs = validateMachines(f.Machines, cfg, field.NewPath("machines"))
	errs = append(errs, machineErrs...)

	var poolErrs field.ErrorList
	cfg.Pools, poolErrs = ipam.ParsePools(f.Pools, field.NewPath("pools"))
	errs = append(errs, poolErrs...)

	if f.BGP != nil {
		var bgpErrs field.ErrorList
		cfg.BGP, bgpErrs = f.BGP.Parse(field.NewPath("bgp"))
		errs = append(errs, bgpErrs...)
		for i, p := range f.BGP.Peers {
			errs = append(errs, peerRacks(field.NewPath("bgp", "peers").Index(i), p, cfg)...)
		}
	}
	if len(f.Pools) > 0 && (f.BGP == nil || f.BGP.ASN == 0) {
		errs = append(errs, field.Required(field.NewPath("bgp", "asn"), "pools are configured, so their addresses must be announced: give the speaker's AS number"))
	}

	var hcErrs field.ErrorList
	cfg.HealthCheck, hcErrs = f.HealthCheck.Parse(field.NewPath("healthCheck"))
	errs = append(errs, hcErrs...)

	errs = append(errs, validatePoolPlacement(f)...)
	var routeErrs field.ErrorList
	cfg.Routes, routeErrs = f.Routes.parse(field.NewPath("routes"))
	errs = append(errs, routeErrs...)
	errs = append(errs, validateRoutePlacement(cfg, f)...)
	cfg.Warnings = warnings(f)

	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

func validateRacks(in []RackFile, path *field.Path) ([]Rack, field.ErrorList) {
	var errs field.ErrorList
	racks := make([]Rack, 0, len(in))
	names := map[string]int{}
	type owned struct {
		prefix netip.Prefix
		path   *field.Path
	}
	var subnets []owned
	for i, rf := range in {
		p := path.Index(i)
		r := Rack{Name: rf.Name, Zone: rf.Zone}
		switch {
		case rf.Name == "":
			errs = append(errs, field.Required(p.Child("name"), "a DNS label naming the rack"))
		case len(validation.IsDNS1123Label(rf.Name)) > 0:
			errs = append(errs, field.Invalid(p.Child("name"), rf.Name, "must be a DNS label: lower-case letters, digits and '-', at most 63 characters"))
		default:
			if j, dup := names[rf.Name]; dup {
				errs = append(errs, field.Invalid(p.Child("name"), rf.Name, fmt.Sprintf("duplicate: racks[%d] has this name", j)))
			}
			names[rf.Name] = i
		}
		if r.Zone == "" {
			r.Zone = rf.Name
		} else {
			errs = append(errs, labelValue(p.Child("zone"), rf.Zone)...)
		}
		for j, s := range rf.Subnets {
			sp := p.Child("subnets").Index(j)
			prefix, err := netip.ParsePrefix(s)
			if err != nil {
				errs = append(errs, field.Invalid(sp, s, "must be a CIDR such as 198.51.100.0/25 or 2001:db8:1::/64"))
				continue
			}
			if prefix != prefix.Masked() {
				errs = append(errs, field.Invalid(sp, s, fmt.Sprintf("host bits are set: the subnet is %s", prefix.Masked())))
				continue
			}
			for _, o := range subnets {
				if o.prefix.Overlaps(prefix) {
					errs = append(errs, field.Invalid(sp, s, fmt.Sprintf("overlaps %s at %s: a node address must belong to one rack", o.prefix, o.path)))
				}
			}
			subnets = append(subnets, owned{prefix, sp})
			r.Subnets = append(r.Subnets, prefix)
		}
		racks = append(racks, r)
	}
	return racks, errs
}

func validateMachines(in []MachineFile, cfg *Config, path *field.Path) (map[string]Machine, field.ErrorList) {
	if len(in) == 0 {
		return nil, nil
	}
	var errs field.ErrorList
	machines := make(map[string]Machine, len(in))
	names := map[string]int{}
	addrs := map[netip.Addr]*field.Path{}
	for i, mf := range in {
		p := path.Index(i)
		m := Machine{Name: mf.Name, Rack: mf.Rack, Type: mf.Type, State: mf.State}
		switch {
		case mf.Name == "":
			errs = append(errs, field.Required(p.Child("name"), "the Node name of this machine"))
		case len(validation.IsDNS1123Subdomain(mf.Name)) > 0:
			errs = append(errs, field.Invalid(p.Child("name"), mf.Name, "must be a valid Node name (a DNS subdomain: lower-case letters, digits, '-' and '.')"))
		default:
			if j, dup := names[mf.Name]; dup {
				errs = append(errs, field.Invalid(p.Child("name"), mf.Name, fmt.Sprintf("duplicate: machines[%d] has this name", j)))
			}
			names[mf.Name] = i
		}
		if m.Type == "" {
			m.Type = DefaultInstanceType
		} else {
			errs = append(errs, labelValue(p.Child("type"), mf.Type)...)
		}
		switch mf.State {
		case "":
			m.State = StateRunning
		case StateRunning, StateShutdown:
		default:
			errs = append(errs, field.NotSupported(p.Child("state"), mf.State, []string{StateRunning, StateShutdown}))
		}
		for j, s := range mf.Addresses {
			ap := p.Child("addresses").Index(j)
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				errs = append(errs, field.Invalid(ap, s, "must be an IPv4 or IPv6 address such as 198.51.100.11 or 2001:db8:1::11"))
				continue
			}
			a = a.Unmap()
			if other, dup := addrs[a]; dup {
				errs = append(errs, field.Invalid(ap, s, fmt.Sprintf("duplicate: %s has this address", other)))
			}
			addrs[a] = ap
			m.Addresses = append(m.Addresses, a)
			if r, ok := cfg.RackOf(a); ok && mf.Rack != "" && r.Name != mf.Rack {
				errs = append(errs, field.Invalid(ap, s, fmt.Sprintf("lies in a subnet of rack %q, but the machine is in rack %q", r.Name, mf.Rack)))
			}
		}
		if mf.Rack != "" {
			if _, ok := cfg.Rack(mf.Rack); !ok {
				errs = append(errs, field.Invalid(p.Child("rack"), mf.Rack, fmt.Sprintf("no such rack; known racks: %s", strings.Join(rackNames(cfg.Racks), ", "))))
			}
		} else if r, ok := cfg.rackOfAny(m.Addresses); ok {
			m.Rack = r.Name
		}
		machines[m.Name] = m
	}
	return machines, errs
}

func labelValue(path *field.Path, v string) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidLabelValue(v) {
		errs = append(errs, field.Invalid(path, v, "must be usable as a label value: "+msg))
	}
	return errs
}

func rackNames(racks []Rack) []string {
	names := make([]string, len(racks))
	for i, r := range racks {
		names[i] = r.Name
	}
	return names
}
