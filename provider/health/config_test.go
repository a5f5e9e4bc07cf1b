package health

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func ptr[T any](v T) *T { return &v }

func TestParse(t *testing.T) {
	def := DefaultConfig()
	type fieldErr struct {
		Field string
		Type  field.ErrorType
	}
	for _, tc := range []struct {
		name     string
		file     *ConfigFile
		want     Config
		wantErrs []fieldErr
	}{
		{name: "absent section: defaults", file: nil, want: def},
		{name: "empty section: defaults", file: &ConfigFile{}, want: def},
		{
			name: "every field set",
			file: &ConfigFile{Enabled: ptr(true), Port: 8080, Path: "/livez?verbose", Interval: dur(3 * time.Second), Timeout: dur(time.Second), UnhealthyThreshold: 5, HealthyThreshold: 1},
			want: Config{Enabled: true, Port: 8080, Path: "/livez?verbose", Interval: 3 * time.Second, Timeout: time.Second, UnhealthyThreshold: 5, HealthyThreshold: 1},
		},
		{
			name: "disabled keeps the other defaults",
			file: &ConfigFile{Enabled: ptr(false)},
			want: func() Config { c := def; c.Enabled = false; return c }(),
		},
		{
			name: "longer interval, default timeout",
			file: &ConfigFile{Interval: dur(10 * time.Second)},
			want: func() Config { c := def; c.Interval = 10 * time.Second; return c }(),
		},
		{name: "port too high", file: &ConfigFile{Port: 65536}, wantErrs: []fieldErr{{"healthCheck.port", field.ErrorTypeInvalid}}},
		{name: "negative port", file: &ConfigFile{Port: -1}, wantErrs: []fieldErr{{"healthCheck.port", field.ErrorTypeInvalid}}},
		{name: "relative path", file: &ConfigFile{Path: "healthz"}, wantErrs: []fieldErr{{"healthCheck.path", field.ErrorTypeInvalid}}},
		{name: "URL instead of path", file: &ConfigFile{Path: "http://x/healthz"}, wantErrs: []fieldErr{{"healthCheck.path", field.ErrorTypeInvalid}}},
		{name: "path with space", file: &ConfigFile{Path: "/health z"}, wantErrs: []fieldErr{{"healthCheck.path", field.ErrorTypeInvalid}}},
		{name: "path with fragment", file: &ConfigFile{Path: "/healthz#x"}, wantErrs: []fieldErr{{"healthCheck.path", field.ErrorTypeInvalid}}},
		{name: "zero interval", file: &ConfigFile{Interval: dur(0)}, wantErrs: []fieldErr{{"healthCheck.interval", field.ErrorTypeInvalid}}},
		{name: "negative timeout", file: &ConfigFile{Timeout: dur(-time.Second)}, wantErrs: []fieldErr{{"healthCheck.timeout", field.ErrorTypeInvalid}}},
		{name: "timeout equal to interval", file: &ConfigFile{Interval: dur(time.Second), Timeout: dur(time.Second)}, wantErrs: []fieldErr{{"healthCheck.timeout", field.ErrorTypeInvalid}}},
		{name: "timeout above interval", file: &ConfigFile{Timeout: dur(2 * time.Second)}, wantErrs: []fieldErr{{"healthCheck.timeout", field.ErrorTypeInvalid}}},
		{name: "interval below the default timeout", file: &ConfigFile{Interval: dur(300 * time.Millisecond)}, wantErrs: []fieldErr{{"healthCheck.timeout", field.ErrorTypeInvalid}}},
		{name: "negative unhealthy threshold", file: &ConfigFile{UnhealthyThreshold: -1}, wantErrs: []fieldErr{{"healthCheck.unhealthyThreshold", field.ErrorTypeInvalid}}},
		{name: "negative healthy threshold", file: &ConfigFile{HealthyThreshold: -3}, wantErrs: []fieldErr{{"healthCheck.healthyThreshold", field.ErrorTypeInvalid}}},
		{
			name: "every problem at once, even when disabled",
			file: &ConfigFile{Enabled: ptr(false), Port: 70000, Path: "x", Interval: dur(-1), Timeout: dur(0), UnhealthyThreshold: -1, HealthyThreshold: -1},
			wantErrs: []fieldErr{
				{"healthCheck.port", field.ErrorTypeInvalid},
				{"healthCheck.path", field.ErrorTypeInvalid},
				{"healthCheck.interval", field.ErrorTypeInvalid},
				{"healthCheck.timeout", field.ErrorTypeInvalid},
				{"healthCheck.unhealthyThreshold", field.ErrorTypeInvalid},
				{"healthCheck.healthyThreshold", field.ErrorTypeInvalid},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := tc.file.Parse(field.NewPath("healthCheck"))
			var gotErrs []fieldErr
			for _, e := range errs {
				gotErrs = append(gotErrs, fieldErr{e.Field, e.Type})
				if e.Detail == "" {
					t.Errorf("error %q says nothing of what is valid", e.Error())
				}
			}
			if diff := cmp.Diff(tc.wantErrs, gotErrs); diff != "" {
				t.Fatalf("Parse() errors (-want +got):\n%s\nall: %v", diff, errs.ToAggregate())
			}
			if len(errs) > 0 {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseYAML decodes the section as the cloud config does, strictly,
// from the form documented in the issue.
func TestParseYAML(t *testing.T) {
	const doc = `
enabled: true
port: 10256
path: /healthz
interval: 2s
timeout: 750ms
unhealthyThreshold: 3
healthyThreshold: 4
`
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var f ConfigFile
	strict, err := sigsjson.UnmarshalStrict(js, &f, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil || len(strict) > 0 {
		t.Fatalf("decoding: %v %v", err, strict)
	}
	got, errs := f.Parse(field.NewPath("healthCheck"))
	if len(errs) > 0 {
		t.Fatalf("Parse() errors: %v", errs.ToAggregate())
	}
	want := Config{Enabled: true, Port: 10256, Path: "/healthz", Interval: 2 * time.Second, Timeout: 750 * time.Millisecond, UnhealthyThreshold: 3, HealthyThreshold: 4}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse() (-want +got):\n%s", diff)
	}
}

func TestWithDefaults(t *testing.T) {
	got := Config{Enabled: true, Interval: 100 * time.Millisecond}.withDefaults()
	want := Config{Enabled: true, Path: DefaultPath, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, UnhealthyThreshold: DefaultUnhealthyThreshold, HealthyThreshold: DefaultHealthyThreshold}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("withDefaults() (-want +got):\n%s", diff)
	}
}
