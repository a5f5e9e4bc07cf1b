package service

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWantsWeightedECMP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   *string
		want    bool
		wantErr bool
	}{
		{"absent", nil, true, false},
		{"true", ptr("true"), true, false},
		{"False with spaces", ptr(" False "), false, false},
		{"false", ptr("false"), false, false},
		{"empty", ptr(""), false, true},
		{"misspelt", ptr("flase"), false, true},
		{"a number", ptr("0"), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
			if tc.value != nil {
				s.Annotations[AnnotationWeightedECMP] = *tc.value
			}
			got, err := WantsWeightedECMP(s)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("WantsWeightedECMP(%v) = %v, %v; want %v, error %v", tc.value, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
