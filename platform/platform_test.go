package platform_test

import (
	"go/build"
	"slices"
	"testing"

	"github.com/headwaylabs/headway/platform"
)

// The library takes a catalog; none of its packages carries the
// platform's (docs/architecture.md).
func TestLibraryDoesNotImportThePlatform(t *testing.T) {
	for _, dir := range []string{"brandguard", "consumer", "deadletter", "dedup", "event", "outbox", "readiness", "status", "supervisor"} {
		pkg, err := build.ImportDir("../"+dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(pkg.Imports, "github.com/headwaylabs/headway/platform") {
			t.Errorf("package %s imports platform", dir)
		}
	}
}

func TestCatalogIsValid(t *testing.T) {
	if err := platform.Catalog().Validate(); err != nil {
		t.Fatal(err)
	}
	if s, ok := platform.Catalog().Stream(platform.StreamWallet); !ok || s.Producer != platform.ServiceWallet {
		t.Errorf("wallet stream: %+v, %v", s, ok)
	}
}
