package service

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOwnership(t *testing.T) {
	class := "example.com/other"
	now := metav1.NewTime(epoch)
	tests := []struct {
		name               string
		svc                *v1.Service
		ours, announceable bool
	}{
		{"LoadBalancer", makeService("a"), true, true},
		{"LoadBalancer being deleted", makeService("a", func(s *v1.Service) { s.DeletionTimestamp = &now }), true, false},
		{"another class", makeService("a", func(s *v1.Service) { s.Spec.LoadBalancerClass = &class }), false, false},
		{"ClusterIP", makeService("a", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeClusterIP }), false, false},
		{"NodePort", makeService("a", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort }), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Ours(tt.svc); got != tt.ours {
				t.Errorf("Ours() = %v, want %v", got, tt.ours)
			}
			if got := Announceable(tt.svc); got != tt.announceable {
				t.Errorf("Announceable() = %v, want %v", got, tt.announceable)
			}
		})
	}
}
