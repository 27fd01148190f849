//go:build tools

// Package tools pins the code generators that logplane runs with `go run -modfile=tools/go.mod`.
// It is a module of its own so that the generators' dependencies stay out of the main go.mod.
package tools

import (
	_ "github.com/bufbuild/buf/cmd/buf"
	_ "golang.org/x/perf/cmd/benchstat"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
