// Command catalogdoc writes the generated event catalog documents from
// platform.Catalog(). It runs through go generate (see platform/platform.go):
//
//	go generate ./platform
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/headwaylabs/headway/platform"
)

func main() {
	md := flag.String("md", "docs/event-catalog.md", "path of the Markdown page")
	js := flag.String("json", "docs/event-catalog.json", "path of the JSON export")
	flag.Parse()
	if err := run(*md, *js); err != nil {
		fmt.Fprintln(os.Stderr, "catalogdoc:", err)
		os.Exit(1)
	}
}

func run(mdPath, jsonPath string) error {
	c := platform.Catalog()
	if err := c.Validate(); err != nil {
		return err
	}
	if err := os.WriteFile(mdPath, c.Markdown(), 0o644); err != nil {
		return err
	}
	js, err := c.JSON()
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, js, 0o644)
}
