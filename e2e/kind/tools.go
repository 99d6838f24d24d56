//go:build tools

// Package tools records the kind CLI as a dependency of this module (see go.mod).
package tools

import _ "sigs.k8s.io/kind"
