package ipam

import (
	"testing"

	memdb "github.com/hashicorp/go-memdb"
)

func TestSchema(t *testing.T) {
	if err := schema().Validate(); err != nil {
		t.Fatalf("schema().Validate() = %v", err)
	}
	if _, err := memdb.NewMemDB(schema()); err != nil {
		t.Fatalf("memdb.NewMemDB(schema()) = %v", err)
	}
}
