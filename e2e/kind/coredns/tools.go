//go:build tools

// Package tools records the coredns binary as a dependency of this module (see go.mod).
package tools

import _ "github.com/coredns/coredns"
